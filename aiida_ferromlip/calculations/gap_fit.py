"""``GapFitCalculation``: fit a GAP to a TrainingSet with gap_fit, validate it on held-out frames.

Runs ``ferromlip-gap`` (``aiida_ferromlip/engines/gap.py``) on the computer of its code: FPS sparse points,
a memory plan from gap_fit's own estimate, the fit, and predictions on the validation split. The parser turns
them into a ``GapPotential``, validation metrics and a parity plot.
"""

from __future__ import annotations

import json

import numpy as np
from aiida import orm

from aiida_ferromlip.calculations.base import FerromlipCalcJob
from aiida_ferromlip.data.potential import GapPotential
from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.engines import gap as engine
from aiida_ferromlip.exit_codes import declare
from aiida_ferromlip.validation import cell_height


def split_indices(num_frames: int, validation_fraction: float, seed: int,
                  always_train=()) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (seeded) train/validation split; at least one training frame is always kept, and the frames
    ``always_train`` are never held out (the validation frames are drawn from the others)."""
    keep = {int(i) for i in always_train}
    order = [int(i) for i in np.random.default_rng(seed).permutation(num_frames) if int(i) not in keep]
    n_validation = min(int(round(validation_fraction * num_frames)), max(num_frames - 1, 0), len(order))
    validation = sorted(order[:n_validation])
    return np.array(sorted(set(range(num_frames)) - set(validation)), dtype=int), np.array(validation, dtype=int)


def training_split(training_set: TrainingSet, parameters: dict) -> tuple[np.ndarray, np.ndarray]:
    """The fit's train/validation split of ``training_set``: ``validation_fraction`` and ``seed`` of ``parameters``;
    frames whose key contains an entry of ``always_train`` (e.g. ``card_``: the frames a failing physics-card item
    asked for, a few per item) are always fitted, never held out."""
    patterns = [str(p) for p in parameters.get('always_train', [])]
    keep = [i for i, origin in enumerate(training_set.origins)
            if any(p in str(origin.get('frame_key', '')) for p in patterns)] if patterns else []
    return split_indices(len(training_set), float(parameters.get('validation_fraction', 0.1)),
                         int(parameters.get('seed', 0)), keep)


def shortest_cell_height(training_set: TrainingSet) -> float:
    """Smallest distance between opposite cell faces over all frames (Å)."""
    return min(cell_height(cell) for cell in training_set.get_array('cells'))


def cutoff_problem(parameters: dict, height: float) -> str | None:
    """A descriptor cutoff beyond half the thinnest cell height ``height`` (Å), unless explicitly allowed."""
    cutoff = max(float(d['cutoff']) for d in parameters['descriptors'])
    if cutoff > height / 2 and not parameters.get('allow_large_cutoff', False):
        return (f'the descriptor cutoff {cutoff} Å exceeds half the shortest cell height ({height:.2f} Å): atoms see '
                f'their own periodic images. Use larger cells, or set `allow_large_cutoff: true` if intended.')
    return None


def parameter_problems(parameters: dict) -> list[str]:
    problems = []
    descriptors = parameters.get('descriptors')
    if not descriptors:
        problems.append('`descriptors` must list at least one descriptor')
    sigma = parameters.get('default_sigma', [])
    if len(sigma) != 4 or any(float(s) < 0 for s in sigma):
        problems.append('`default_sigma` must be 4 non-negative numbers (energy, force, virial, hessian)')
    for name, values in parameters.get('frame_sigma', {}).items():
        if not str(name).replace('_', '').isalnum() or len(values) != 4 or any(float(v) < 0 for v in values):
            problems.append(f'`frame_sigma` entry `{name}` must be a name (letters, digits, _) with 4 non-negative '
                            f'sigmas (energy, force, virial, hessian)')
    if not isinstance(parameters.get('always_train', []), list):
        problems.append('`always_train` must be a list of frame-key fragments (frames never held out)')
    fraction = parameters.get('validation_fraction', 0.1)
    if not 0 <= float(fraction) < 1:
        problems.append('`validation_fraction` must be in [0, 1)')
    virials = parameters.get('virial_fraction', 'auto')
    if virials != 'auto' and not 0 <= float(virials) <= 1:
        problems.append('`virial_fraction` must be `auto` or in [0, 1]')
    if float(parameters.get('max_memory_gb', 16)) <= 0:
        problems.append('`max_memory_gb` must be positive')
    for index, descriptor in enumerate(descriptors or []):
        if 'type' not in descriptor or 'cutoff' not in descriptor or 'n_sparse' not in descriptor:
            problems.append(f'descriptor {index} needs `type`, `cutoff` and `n_sparse`')
        if descriptor.get('sparse_method') == 'fps' and not (descriptor.get('type') == 'soap'
                                                             and descriptor.get('per_species')):
            problems.append(f'descriptor {index}: `fps` sparse selection needs a per-species SOAP')
    return problems


def validate_inputs(inputs, namespace):
    """Fail before the job: bad parameters, empty or single-species sets, cutoffs vs cells, sparse counts."""
    if 'training_set' not in namespace or 'parameters' not in namespace:
        return None
    parameters = inputs['parameters'].get_dict()
    problems = parameter_problems(parameters)
    if problems:
        return '\n'.join(problems)
    training_set = inputs['training_set']
    if len(training_set) == 0:
        return 'the TrainingSet is empty'
    species = training_set.species
    if parameters.get('multi_species', False) and len(species) < 2:
        return f'this preset is for multi-species materials but the TrainingSet holds only {species}'

    problem = cutoff_problem(parameters, shortest_cell_height(training_set))
    if problem:
        return problem

    train, _ = training_split(training_set, parameters)
    if len(train) == 0:
        return 'no frame is left for training after the validation split'
    counts = _species_counts(training_set, train)
    for index, descriptor in enumerate(parameters['descriptors']):
        if descriptor['type'] != 'soap' or parameters.get('clip_sparse', False):
            continue
        for symbol in species:
            wanted = engine.sparse_count(descriptor['n_sparse'], symbol)
            if wanted > counts[symbol]:
                return (f'descriptor {index} asks for {wanted} sparse environments around {symbol}, but the training '
                        f'split has only {counts[symbol]} {symbol} atoms')
    return None


def _species_counts(training_set: TrainingSet, frame_indices) -> dict[str, int]:
    from ase.data import chemical_symbols

    numbers = training_set.get_array('numbers')
    offsets = np.concatenate([[0], np.cumsum(training_set.get_array('n_atoms'))])
    selected = np.concatenate([numbers[offsets[i]:offsets[i + 1]] for i in frame_indices])
    return {symbol: int(np.sum(selected == chemical_symbols.index(symbol))) for symbol in training_set.species}


def frame_kind(frame_key: str, frame_sigma: dict) -> str:
    """The ``frame_sigma`` entry whose name the frame key contains (``default`` when none does)."""
    return next((name for name in frame_sigma if name in str(frame_key)), 'default')


def gap_fit_frames(training_set: TrainingSet, indices, frame_sigma: dict | None = None) -> list:
    """Frames as gap_fit reads them: ``REF_energy``, ``REF_forces`` and a 9-number ``REF_virial`` (eV); with
    ``frame_sigma`` each frame's ``config_type`` names the entry its key matches (gap_fit's per-type sigmas)."""
    indices = [int(i) for i in indices]
    origins = training_set.origins
    out = []
    for i, atoms in zip(indices, training_set.get_frames(indices)):
        results = atoms.calc.results
        plain = atoms.copy()
        plain.calc = None
        plain.info = {'frame_index': int(i), engine.ENERGY_KEY: float(results['energy'])}
        if frame_sigma:
            plain.info['config_type'] = frame_kind(origins[i].get('frame_key', ''), frame_sigma)
        plain.arrays[engine.FORCES_KEY] = np.asarray(results['forces'])
        if 'stress' in results:
            plain.info[engine.VIRIAL_KEY] = (-atoms.get_stress(voigt=False) * atoms.get_volume()).ravel()
        out.append(plain)
    return out


class GapFitCalculation(FerromlipCalcJob):
    """Fit a Gaussian Approximation Potential to a TrainingSet (gap_fit), within a memory budget."""

    _PARSER = 'ferromlip.gap_fit'
    _OUTPUT_FILENAME = 'ferromlip-gap.out'
    _PROTOCOL_FILE = 'gap.yaml'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('training_set', valid_type=TrainingSet, help='Labelled frames to fit.')
        spec.input('parameters', valid_type=orm.Dict,
                   help='Resolved fit settings (see protocols/gap.yaml): descriptors, default_sigma, e0_method, '
                        'validation_fraction, seed, max_memory_gb, virial_fraction, allow_large_cutoff, '
                        'clip_sparse (cap per-species sparse budgets at the environments available), always_train '
                        '(frame-key fragments of frames never held out for validation).')
        spec.inputs.validator = validate_inputs

        spec.output('potential', valid_type=GapPotential, help='The fitted GAP (single XML) with its metadata.')
        spec.output('metrics', valid_type=orm.Dict, required=False,
                    help='Validation RMSE/MAE: energy (meV/f.u., meV/atom), forces (meV/Å), stress (kbar).')
        spec.output('parity_plot', valid_type=orm.SinglefileData, required=False, help='Parity plot (PNG).')
        spec.output('fit_report', valid_type=orm.Dict,
                    help='Wall time, peak RSS, memory plan (frames that kept virials), FPS distances, command.')

        declare(spec, 'ERROR_MEMORY_BUDGET', 'ERROR_OUT_OF_MEMORY', 'ERROR_SINGULAR_MATRIX', 'ERROR_MISSING_SPECIES',
                'ERROR_BAD_PARAMETERS', 'ERROR_GAP_FIT_FAILED')

    @classmethod
    def get_builder_from_protocol(cls, code: orm.AbstractCode, training_set: TrainingSet,
                                  protocol: str | None = None, overrides: dict | None = None, *, options=None):
        """Builder for ``training_set`` with the preset ``protocol`` (fast | minimalist | batio3_gap).

        ``overrides`` follows the input layout, e.g. ``{'parameters': {'max_memory_gb': 8}}``; lists (the
        descriptors) are replaced as a whole. The protocol file is never modified.
        """
        return cls.builder_from_protocol(code, {'training_set': training_set}, protocol, overrides, options=options)

    def prepare_for_submission(self, folder):
        from ase.io import write

        parameters = self.inputs.parameters.get_dict()
        train, validation = training_split(self.inputs.training_set, parameters)
        with folder.open(engine.TRAIN_FILE, 'w') as handle:
            write(handle, gap_fit_frames(self.inputs.training_set, train, parameters.get('frame_sigma')),
                  format='extxyz')
        with folder.open(engine.VALIDATION_FILE, 'w') as handle:
            write(handle, gap_fit_frames(self.inputs.training_set, validation), format='extxyz')
        with folder.open(engine.PARAMETERS_FILE, 'w') as handle:
            json.dump(parameters, handle, indent=1)

        return self.calcinfo(['--parameters', engine.PARAMETERS_FILE],
                             [engine.POTENTIAL_FILE, engine.REPORT_FILE, engine.PREDICTIONS_FILE, engine.FIT_LOG])
