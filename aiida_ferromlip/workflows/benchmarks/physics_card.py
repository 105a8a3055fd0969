"""``PhysicsCardWorkChain``: is a potential physically right? The same properties with the potential and with its
labeller, compared item by item within tolerances from the protocol (``analysis.physics_card`` lists the items).

Labeller side: single points (EOS points, path images, phonon displacements, the independent test set) through the
``LabelWorkChain`` — any engine, so the card works for the reference model, pw.x or VASP — and polymorph
relaxations as ``AtomsTaskCalculation`` (reference model) or ``PwRelaxWorkChain`` (pw.x). Its values come out as
``reference_values``; give them back (and ``test_set``) to a later card and it pays only for the potential's side.
Potential side: one ``AtomsTaskCalculation`` for the single points, one for the relaxations, one
``SampleCalculation`` (flexible-cell MD: test-set frames and stability). Calcfunctions only tabulate.

Paths and the EOS are taken at the labeller's own equilibrium lattice (found first, from its EOS), since the
double well of BaTiO3 depends strongly on the volume (SevenNet-0: under 1 meV/f.u. at 4.00 Å, ~7 at 4.035 Å).
"""

from __future__ import annotations

import io
import pathlib

import numpy as np
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import WorkChain, calcfunction, if_, while_

from aiida_ferromlip import materials
from aiida_ferromlip.analysis import physics_card as card
from aiida_ferromlip.calculations.atoms_task import AtomsTaskCalculation
from aiida_ferromlip.calculations.base import PROTOCOLS, ProtocolMixin
from aiida_ferromlip.calculations.sample import SampleCalculation
from aiida_ferromlip.data.potential import POTENTIAL_TYPES
from aiida_ferromlip.data.training_set import TrainingSet, merge_training_sets, trajectory_frames
from aiida_ferromlip.exit_codes import declare
from aiida_ferromlip.materials.paths import KNOWN_PATHS, collective_displacement_path, scaled_to_lattice, strained_copies
from aiida_ferromlip.materials.units import formula_units
from aiida_ferromlip.workflows.benchmarks.polymorphs import pw_relax_outputs, pw_relaxed_polymorphs, task_rows
from aiida_ferromlip.workflows.label.base import LabelWorkChain

GROUPS = ('eos', 'polymorphs', 'wells', 'soft_modes', 'test_set', 'stability')


def card_protocol_inputs(protocol: str | None = None, overrides: dict | None = None) -> dict:
    return PhysicsCardWorkChain.get_protocol_inputs(protocol, overrides)


def _filled(given: orm.Dict, key: str) -> dict:
    """``given`` over the YAML's ``default_inputs``: a card's parameters or tolerances stored by an older version
    (e.g. a continued loop's) lack the keys added since; they take the protocol file's defaults."""
    from aiida_quantumespresso.workflows.protocols.utils import recursive_merge

    return recursive_merge(PhysicsCardWorkChain._load_protocol_file()['default_inputs'][key], given.get_dict())


def card_settings(parameters: orm.Dict) -> dict:
    return _filled(parameters, 'parameters')


def card_tolerances(tolerances: orm.Dict) -> dict:
    return _filled(tolerances, 'tolerances')


def card_frames(card: orm.WorkflowNode) -> dict:
    """The single-point frames a finished card built (its ``eos_structures`` and ``card_structures`` outputs) or was
    given (``frames``): what a later card of the same labeller side takes as ``frames``."""
    if 'frames' in card.inputs:
        return dict(card.inputs.frames)
    frames = {}
    for called in card.called:
        if called.process_label in ('eos_structures', 'card_structures') and called.is_finished_ok:
            frames.update({link.link_label: link.node
                           for link in called.base.links.get_outgoing(link_type=LinkType.CREATE).all()})
    return frames


# --------------------------------------------------------------------------------------------- calcfunctions
@calcfunction
def eos_structures(parent: orm.StructureData, parameters: orm.Dict) -> dict:
    """The parent, isotropically strained: the points of its equation of state (``eos_00``...)."""
    frames = strained_copies(parent.get_ase(), card_settings(parameters)['eos_strains'])
    return {f'eos_{i:02d}': orm.StructureData(ase=atoms) for i, atoms in enumerate(frames)}


@calcfunction
def card_structures(parent: orm.StructureData, reference_eos: orm.Dict, paths: orm.Dict,
                    parameters: orm.Dict) -> dict:
    """At the labeller's equilibrium lattice: the parent (``parent_at_lattice``), the images of every collective
    displacement path (``path_<name>_<nn>``) and the phonon displacements (``phonon_<nnn>``)."""
    settings = card_settings(parameters)
    lattice = reference_eos['eos']['lattice']
    atoms = scaled_to_lattice(parent.get_ase(), lattice)
    outputs = {'parent_at_lattice': orm.StructureData(ase=atoms)}
    definition = paths.get_dict()
    for name, direction in definition['directions'].items():
        images = collective_displacement_path(atoms, definition['species'], direction,
                                              settings['path_displacements'], settings['path_supercell'])
        outputs.update({f'path_{name}_{i:02d}': orm.StructureData(ase=image) for i, image in enumerate(images)})
    for i, cell in enumerate(card.displaced_supercells(atoms, settings['phonon_supercell'],
                                                       settings['phonon_distance'])):
        outputs[f'phonon_{i:03d}'] = orm.StructureData(ase=cell)
    return outputs


@calcfunction
def card_side(labels: TrainingSet, parameters: orm.Dict, paths: orm.Dict, parent_at_lattice: orm.StructureData | None = None,
              polymorphs: orm.Dict | None = None, stability: orm.Dict | None = None) -> orm.Dict:
    """One side's values (labeller or potential) from its labels of the card's structures: ``eos`` (fit and
    points), ``wells`` (energies and minimum per path), ``soft_modes`` (frequencies at Γ, X, M, R), and the
    ``polymorphs`` rows and the labeller's own MD ``stability`` values when given. A group that cannot be computed
    is ``{'error': reason}``."""
    settings = card_settings(parameters)
    frames = labels.frames_by_key()
    values = {}
    eos_keys = sorted(k for k in frames if k.startswith('eos_'))
    try:
        units = [formula_units(frames[k]) for k in eos_keys]
        volumes = [frames[k].get_volume() / n for k, n in zip(eos_keys, units)]
        energies = [frames[k].get_potential_energy() / n for k, n in zip(eos_keys, units)]
        values['eos'] = {**card.equation_of_state(volumes, energies),
                         'points': {'volumes_per_fu': volumes, 'energies_per_fu': energies}}
    except Exception as exception:
        values['eos'] = {'error': f'{type(exception).__name__}: {exception} ({len(eos_keys)} EOS points labelled)'}
    if parent_at_lattice is not None:
        wells = {}
        for name in paths['directions']:
            keys = [f'path_{name}_{i:02d}' for i in range(len(settings['path_displacements']))]
            missing = [k for k in keys if k not in frames]
            if missing:
                wells = {'error': f'path images not labelled: {", ".join(missing)}'}
                break
            energies = [frames[k].get_potential_energy() / formula_units(frames[k]) for k in keys]
            wells[name] = {'displacements': settings['path_displacements'], 'energies_per_fu': energies,
                           'well': card.well(settings['path_displacements'], energies)}
        values['wells'] = wells
        phonon_keys = sorted(k for k in frames if k.startswith('phonon_'))
        try:
            # with the unstable modes' patterns: a failing soft-mode item sends frames along the labeller's ones
            values['soft_modes'] = card.soft_modes(parent_at_lattice.get_ase(), settings['phonon_supercell'],
                                                   settings['phonon_distance'],
                                                   [frames[k].get_forces() for k in phonon_keys],
                                                   card.card_points(settings['phonon_points'],
                                                                    settings['phonon_supercell']))
        except Exception as exception:
            values['soft_modes'] = {'error': f'{type(exception).__name__}: {exception}'}
    if polymorphs is not None:
        values['polymorphs'] = polymorphs.get_dict()
    if stability is not None:
        values['stability'] = stability.get_dict()
    return orm.Dict(values)


@calcfunction
def with_labeller_stability(reference: orm.Dict, stability: orm.Dict) -> orm.Dict:
    """A labeller side made without the labeller's MD, with its MD volumes added (``stability``)."""
    return orm.Dict({**reference.get_dict(), 'stability': stability.get_dict()})


@calcfunction
def polymorph_rows(results: orm.Dict, parent: orm.Str) -> orm.Dict:
    """The relaxed polymorphs of an ``AtomsTaskCalculation`` as card rows (the polymorph ranking's rows)."""
    return orm.Dict({'parent': parent.value, 'rows': task_rows(results.get_dict()), 'failures': results['failures']})


@calcfunction
def test_set_structures(parameters: orm.Dict, **inputs) -> dict:
    """The independent test set: frames drawn at random (not by FPS) from the potential's MD at the protocol's
    temperatures (after the first quarter of each run), plus rattled, strained copies of the labeller-relaxed
    polymorphs in the path supercell. ``inputs``: ``md_<run>`` trajectories and ``polymorph_<name>`` structures."""
    settings = card_settings(parameters)
    rng = np.random.default_rng(settings['seed'])
    pool = []
    for key in sorted(k for k in inputs if k.startswith('md_')):
        trajectory = inputs[key]
        # a frame where the potential's MD broke is no test of anything: the sampler's own sanity rules decide
        pool += [(key, index) for index in _sane_frames(trajectory) if index >= trajectory.numsteps // 4]
    outputs = {}
    if pool:
        picks = rng.choice(len(pool), size=min(settings['test_md_frames'], len(pool)), replace=False)
        for number, pick in enumerate(sorted(picks)):
            key, index = pool[pick]
            outputs[f'test_md_{number:03d}'] = orm.StructureData(ase=inputs[key].get_step_structure(index).get_ase())
    polymorphs = {k: inputs[k].get_ase() for k in sorted(inputs) if k.startswith('polymorph_')}
    if not polymorphs and 'reference_values' in inputs:  # an earlier card's labeller-relaxed polymorphs
        from ase import Atoms

        rows = inputs['reference_values'].get_dict().get('polymorphs', {}).get('rows', {})
        polymorphs = {name: Atoms(numbers=row['structure']['numbers'], cell=row['structure']['cell'],
                                  positions=row['structure']['positions'], pbc=True)
                      for name, row in sorted(rows.items()) if row.get('structure')}
    names = sorted(polymorphs)
    for number in range(settings['test_polymorph_frames'] if names else 0):
        atoms = polymorphs[names[number % len(names)]].repeat(settings['path_supercell'])
        frame = materials.rattled_strained(atoms, 1, rattle=settings['test_rattle'], strain=settings['test_strain'],
                                           seed=settings['seed'] + 1000 + number)[0]
        outputs[f'test_polymorph_{number:03d}'] = orm.StructureData(ase=frame)
    return outputs


@calcfunction
def test_set_errors(reference: TrainingSet, predicted: TrainingSet) -> orm.Dict:
    """The potential's errors on the test set (frames paired by key)."""
    from aiida_ferromlip.analysis.errors import error_metrics, labels_from_pairs

    return orm.Dict(error_metrics(labels_from_pairs(*paired_frames(reference, predicted))))


def paired_frames(reference: TrainingSet, predicted: TrainingSet) -> tuple[list, list]:
    """The frames both sets hold, paired by key (sorted): ``(reference frames, predicted frames)``."""
    reference_frames, predicted_frames = reference.frames_by_key(), predicted.frames_by_key()
    keys = sorted(set(reference_frames) & set(predicted_frames))
    return [reference_frames[k] for k in keys], [predicted_frames[k] for k in keys]


def _sane_frames(trajectory, frames: list | None = None) -> list[int]:
    """Indices of the frames of an MD trajectory (``frames``: its ASE frames, if already built) that pass the
    sampler's sanity rules (no blow-up)."""
    from aiida_ferromlip.analysis.selection import sanity_problem

    frames = trajectory_frames(trajectory) if frames is None else frames
    forces, temperatures = trajectory.get_array('forces'), trajectory.get_array('temperatures')
    targets = trajectory.get_array('target_temperatures')
    per_atom = trajectory.get_array('energies') / len(trajectory.symbols)
    reference = float(np.median(per_atom))
    return [i for i, atoms in enumerate(frames)
            if not sanity_problem(atoms, forces=forces[i], temperature=temperatures[i], target_temperature=targets[i],
                                  energy_per_atom=per_atom[i], reference_energy_per_atom=reference)]


@calcfunction
def potential_side(points: orm.Dict, test_set: orm.Dict, stability: orm.Dict) -> orm.Dict:
    """The potential's side of the card in one node: what its single points and relaxations give (``card_side``),
    its test-set errors and its MD stability (each ``{'error': reason}`` when that job failed)."""
    return orm.Dict({**points.get_dict(), 'test_set': test_set.get_dict(), 'stability': stability.get_dict()})


@calcfunction
def md_stability(parameters: orm.Dict, start: orm.StructureData, **trajectories: orm.TrajectoryData) -> dict:
    """Per MD run at the top temperature and above: shortest distance over the frames, final volume change
    (``values``); and each run's last frame that passes the sampler's sanity rules (``last_sane_<run>``): where the
    potential was about to go wrong, a frame worth labelling (a collapsed frame teaches a small fit nothing)."""
    from aiida_ferromlip.validation import min_interatomic_distance

    values, outputs = {}, {}
    for key, trajectory in sorted(trajectories.items()):
        frames = trajectory_frames(trajectory)  # ASE atoms from the arrays (a StructureData per frame is slow)
        values[key] = card.md_stability(trajectory.get_cells(), [min_interatomic_distance(a) for a in frames],
                                        start.get_ase().get_volume(), formula_units(start.get_ase()))
        sane = _sane_frames(trajectory, frames)
        values[key]['sane_frames'] = len(sane)
        if sane:
            outputs[f'last_sane_{key}'] = orm.StructureData(ase=frames[sane[-1]])
    return {'values': orm.Dict(values), **outputs}


@calcfunction
def physics_card(reference: orm.Dict, potential: orm.Dict, tolerances: orm.Dict, parameters: orm.Dict,
                 **structures: orm.StructureData) -> dict:
    """The card: one row per item (values of both sides, tolerance, pass/fail), Markdown, PNG, and ``targets``:
    rattled copies of the structures where a failing item was measured (path images, EOS points, the potential's
    relaxed polymorphs, MD frames; for a soft mode, supercells displaced along the labeller's unstable modes at that
    point) for the loop's next batch."""
    reference_values, potential_values = reference.get_dict(), potential.get_dict()
    rows = card.compare(reference_values, potential_values, card_tolerances(tolerances))
    failed = sorted({row['group'] for row in rows if not row['passed']})
    summary = {'rows': rows, 'passed': not failed, 'failed_groups': failed,
               'num_passed': sum(r['passed'] for r in rows), 'num_items': len(rows),
               'markdown': card.markdown(rows)}
    outputs = {'card': orm.Dict(summary),
               'markdown': orm.SinglefileData(io.BytesIO(summary['markdown'].encode()), filename='physics_card.md'),
               'plot': orm.SinglefileData(io.BytesIO(card.plot_png(reference_values, potential_values, rows,
                                                                   'Physics card')), filename='physics_card.png')}
    settings = card_settings(parameters)
    rng = np.random.default_rng(settings['seed'])
    targets = {}
    for item, keys in _target_candidates(rows, structures, reference_values, potential_values, settings).items():
        count = settings['target_frames_per_item']
        targets[item] = [structures[keys[pick]].get_ase()
                         for pick in sorted(rng.choice(len(keys), size=count, replace=len(keys) < count))]
    targets.update(_soft_mode_targets(rows, reference_values, structures.get('parent_at_lattice'), settings,
                                      int(rng.integers(1 << 30))))
    for item, frames in targets.items():
        for number, atoms in enumerate(frames):
            atoms = _repeated_to_height(atoms, settings['target_min_height'])
            frame = materials.rattled_strained(atoms, 1, rattle=settings['target_rattle'], strain=settings['target_strain'],
                                               seed=int(rng.integers(1 << 30)))[0]
            outputs[f'target_{item}_{number}'] = orm.StructureData(ase=frame)
    return outputs


#: q-point labels as they may appear in link labels
_POINT_NAMES = {'Γ': 'G'}


def _soft_mode_targets(rows, reference, parent_at_lattice, settings, seed) -> dict[str, list]:
    """Per failing soft-mode point: supercells of the parent displaced along the labeller's unstable modes at that
    point (``card.mode_frames``), when the labeller's side has their patterns (older reference values have not:
    then the phonon displacements are sent, see ``_target_candidates``)."""
    modes = reference.get('soft_modes', {}).get('unstable_modes')
    if not modes or parent_at_lattice is None:
        return {}
    targets = {}
    for row in rows:
        if row['group'] != 'soft_modes' or row['passed'] or not row['item'].endswith('unstable modes'):
            continue
        point = row['item'].split()[0]
        at_point = [mode for mode in modes if mode['point'] == point]
        if at_point:
            targets[f'soft_modes_{_POINT_NAMES.get(point, point)}'] = card.mode_frames(
                parent_at_lattice.get_ase(), settings['path_supercell'], at_point, settings['target_mode_frames'],
                settings['target_mode_amplitudes'], seed=seed)
    return targets


def _repeated_to_height(atoms, min_height: float):
    """``atoms`` repeated along each cell vector until the cell is at least ``min_height`` Å thick in every direction
    (a potential's relaxed 5-atom polymorph, or a squashed MD cell, would otherwise be thinner than a fit allows)."""
    from aiida_ferromlip.validation import cell_height, cell_heights

    repeats = tuple(max(1, int(np.ceil(min_height / h))) for h in cell_heights(atoms.cell.array))
    repeated = atoms.repeat(repeats)
    assert cell_height(repeated.cell.array) >= min_height - 1e-9
    return repeated


def _target_candidates(rows, structures, reference, potential, settings) -> dict[str, list[str]]:
    """Per failing item, the keys of the structures where it was measured: the images of a failing path around its
    minima, the potential's relaxed cell of a failing polymorph, the EOS cells, the phonon displacements, the last
    frames of the MD runs."""
    failing = [row for row in rows if not row['passed']]
    candidates = {}
    for row in failing:
        group = row['group']
        if group == 'wells':
            path = row['item'].split()[0]
            keys = [k for k in structures if k.startswith(f'path_{path}_')
                    and _near_minimum(k, reference, potential, settings)]
            candidates[f'wells_{path}'] = sorted(keys)
        elif group == 'polymorphs' and row['item'] == 'order':
            # the polymorphs whose rank the potential changes: their relaxed cells teach it the energy differences
            swapped = [name for rank, name in enumerate(row['labeller'] or [])
                       if rank >= len(row['potential'] or []) or row['potential'][rank] != name]
            keys = [f'relaxed_{name}' for name in swapped if f'relaxed_{name}' in structures]
            if keys:
                candidates['polymorphs_order'] = keys
        elif group == 'polymorphs':
            name = row['item'].split()[0]
            if f'relaxed_{name}' in structures:
                candidates[f'polymorphs_{name}'] = [f'relaxed_{name}']
        elif group == 'soft_modes' and reference.get('soft_modes', {}).get('unstable_modes'):
            continue  # frames along the labeller's unstable modes instead (_soft_mode_targets)
        elif group in ('eos', 'soft_modes', 'stability'):
            prefix = {'eos': 'eos_', 'soft_modes': 'phonon_', 'stability': 'broken_'}[group]
            candidates[group] = sorted(k for k in structures if k.startswith(prefix))
    return {item: keys for item, keys in candidates.items() if keys}


def _near_minimum(key: str, reference: dict, potential: dict, settings: dict) -> bool:
    """A path image between zero and 1.5x the farther of the two minima of its path."""
    _, name, index = key.split('_')
    wells = [side.get('wells', {}).get(name, {}).get('well', {}).get('position_A', 0.0) for side in (reference, potential)]
    return settings['path_displacements'][int(index)] <= 1.5 * max(max(wells), 0.05)


# --------------------------------------------------------------------------------------------- the work chain
def material_definition(material: str | None, parent, polymorphs: dict, paths: dict | None) -> tuple:
    """``(parent Atoms, {name: Atoms}, path definition)`` from a named material or the user's inputs.

    :raises ValueError: naming what to give when the card knows no parent or path for the material."""
    if material is not None and material not in materials.MATERIALS:
        raise ValueError(f'unknown material `{material}`; known: {", ".join(materials.MATERIALS)}')
    known = KNOWN_PATHS.get(material) if material else None
    if paths is None and known is None:
        raise ValueError(f'the card knows no parent phase and displacement path for '
                         f'{material or "these structures"}: give `parent`, `polymorphs` and `paths` '
                         f'({{"species": ..., "directions": {{name: [x, y, z]}}}}); known materials: '
                         f'{", ".join(KNOWN_PATHS)}')
    definition = dict(paths or known)
    ranking = materials.polymorphs(material, 'ranking') if material else {}
    parent_atoms = parent.get_ase() if parent is not None else ranking.get(definition.get('parent'))
    if parent_atoms is None:
        raise ValueError('no parent phase: give `parent` (the high-symmetry phase in its unit cell)')
    structures = {name: s.get_ase() for name, s in polymorphs.items()} if polymorphs else \
        {materials.port_name(name): atoms for name, atoms in ranking.items()}
    parent_name = materials.port_name(definition.get('parent', 'parent'))
    if parent_name not in structures:
        structures[parent_name] = parent_atoms
    definition['parent'] = parent_name
    return parent_atoms, structures, definition


def validate_inputs(inputs, namespace):
    if 'parameters' not in namespace:
        return None
    try:
        parent, polymorphs, definition = material_definition(
            inputs['material'].value if 'material' in inputs else None, inputs.get('parent'),
            inputs.get('polymorphs', {}), inputs['paths'].get_dict() if 'paths' in inputs else None)
    except ValueError as exception:
        return str(exception)
    parameters, tolerances = inputs['parameters'].get_dict(), inputs['tolerances'].get_dict()
    known = card_protocol_inputs()
    unknown = set(parameters) - set(known['parameters'])
    if unknown:
        return f'unknown card parameters {sorted(unknown)}; known: {sorted(known["parameters"])}'
    try:
        settings = card_settings(inputs['parameters'])
        card.card_points(settings['phonon_points'], settings['phonon_supercell'])
    except ValueError as exception:
        return str(exception)
    unknown = set(tolerances) - set(GROUPS)
    if unknown:
        return f'unknown card items {sorted(unknown)}; known: {", ".join(GROUPS)}'
    species = {s for atoms in (parent, *polymorphs.values()) for s in atoms.get_chemical_symbols()}
    if 'potential' in inputs:
        missing = sorted(species - set(inputs['potential'].species))
        if missing:
            return (f'the potential knows {", ".join(inputs["potential"].species)} but the material has '
                    f'{", ".join(missing)}: a card cannot judge it')
    if definition['species'] not in parent.get_chemical_symbols():
        return f'the path moves {definition["species"]}, which the parent phase has not'
    if 'reference_values' not in inputs:
        label = inputs.get('labeller', {})
        engine = label['engine'].value if 'engine' in label else 'reference'
        if engine not in ('reference', 'qe'):
            return f'polymorph relaxations with the `{engine}` labeller are not available: use reference or qe'
    if 'potential' in inputs and 'code' not in inputs.get('sample', {}):
        return 'the card needs a `sample` code (ferromlip.sample) for the MD of the potential'
    return None


class PhysicsCardWorkChain(ProtocolMixin, WorkChain):
    """The physics card of a potential against its labeller (or, without a potential, the labeller's side only)."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('potential', valid_type=POTENTIAL_TYPES, required=False,
                   help='The potential to judge; without it only the labeller side (`reference_values`) is made.')
        spec.input('material', valid_type=orm.Str, required=False,
                   help=f'A material the card knows ({", ".join(KNOWN_PATHS)}): parent, polymorphs and paths.')
        spec.input('parent', valid_type=orm.StructureData, required=False,
                   help='The high-symmetry parent phase in its unit cell (default: the material\'s).')
        spec.input_namespace('polymorphs', valid_type=orm.StructureData, dynamic=True, required=False,
                             help='Polymorphs relaxed in their own symmetry (default: the material\'s).')
        spec.input('paths', valid_type=orm.Dict, required=False,
                   help='`{"species": "Ti", "directions": {name: [x, y, z]}}`: collective displacement paths.')
        spec.input('parameters', valid_type=orm.Dict, help='Structures, MD and test-set settings (protocol).')
        spec.input('tolerances', valid_type=orm.Dict, help='Per item group (protocol).')
        spec.input('reference_values', valid_type=orm.Dict, required=False,
                   help="An earlier card's labeller side: the labeller is not run again.")
        spec.input('test_set', valid_type=TrainingSet, required=False,
                   help="An earlier card's independent test set (labelled once, reused).")
        spec.input_namespace('frames', valid_type=orm.StructureData, dynamic=True, required=False,
                             help="An earlier card's single-point frames (`eos_*`, `path_*`, `phonon_*`, "
                                  "`parent_at_lattice`: `card_frames` of that card) for the same labeller side and "
                                  "parameters: not built and stored again. Frames that do not match this card's lattice "
                                  "and grids are not used (the card builds its own and says so).")
        spec.input('task_code', valid_type=orm.AbstractCode, help='A ferromlip.atoms_task code (ferromlip-task).')
        spec.input('task_options', valid_type=orm.Dict, required=False, help='metadata.options of the task jobs.')
        spec.expose_inputs(LabelWorkChain, namespace='labeller', exclude=('structures',),
                           namespace_options={'help': 'How the labeller makes its single points (any engine).'})
        spec.expose_inputs(SampleCalculation, namespace='sample', exclude=('potential', 'structure', 'parameters'),
                           namespace_options={'required': False, 'populate_defaults': False,
                                              'help': 'The MD code (and options) for the test set and stability.'})
        spec.inputs.validator = validate_inputs
        spec.outline(
            cls.setup,
            if_(cls.needs_reference)(cls.reference_eos, cls.inspect_reference_eos),
            cls.structures,
            if_(cls.needs_reference)(cls.reference_points),
            if_(cls.has_potential)(cls.potential_side),
            if_(cls.needs_reference)(
                while_(cls.pw_relaxations_left)(cls.pw_relax_next),
                cls.collect_reference,
            ),
            if_(cls.has_potential)(
                if_(cls.needs_test_set)(cls.label_test_set),
                cls.predict_test_set,
                cls.tabulate,
            ),
        )
        spec.output('reference_values', valid_type=orm.Dict, help="The labeller's side, to reuse in later cards.")
        spec.output('test_set', valid_type=TrainingSet, required=False, help='The independent test set (labelled).')
        spec.output('parent_at_lattice', valid_type=orm.StructureData,
                    help="The parent phase at the labeller's equilibrium lattice.")
        spec.output('card', valid_type=orm.Dict, required=False, help='Rows per item, pass/fail, failed groups.')
        spec.output('markdown', valid_type=orm.SinglefileData, required=False, help='The card as a Markdown table.')
        spec.output('plot', valid_type=orm.SinglefileData, required=False, help='EOS, wells, polymorphs, phonons (PNG).')
        spec.output_namespace('targets', valid_type=orm.StructureData, dynamic=True, required=False,
                              help='Frames where failing items were measured, for the next labels.')
        declare(spec, 'ERROR_REFERENCE_EOS_FAILED', 'ERROR_POTENTIAL_JOB_FAILED', 'ERROR_TEST_SET_FAILED')

    @classmethod
    def get_protocol_filepath(cls) -> pathlib.Path:
        return PROTOCOLS / 'physics_card.yaml'

    @classmethod
    def get_builder_from_protocol(cls, label_code, task_code, sample_code=None, potential=None,
                                  material: str | None = 'BaTiO3', protocol: str | None = None,
                                  overrides: dict | None = None, *, engine: str = 'reference',
                                  label_protocol: str = 'fast'):
        """Builder judging ``potential`` (or only the labeller's side without it) for ``material``."""
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        if potential is not None:
            builder.potential = potential
        if material:
            builder.material = orm.Str(material)
        builder.parameters = orm.Dict(inputs['parameters'])
        builder.tolerances = orm.Dict(inputs['tolerances'])
        builder.task_code = task_code
        label = LabelWorkChain.get_builder_from_protocol(label_code, {}, engine=engine, protocol=label_protocol)
        builder.labeller = {'engine': label.engine, 'frames_per_job': label.frames_per_job, engine: label[engine]}
        if sample_code is not None:
            builder.sample = {'code': sample_code}
        return builder

    # ------------------------------------------------------------------------------------------------ steps
    def setup(self):
        parent, polymorphs, definition = material_definition(
            self.inputs.material.value if 'material' in self.inputs else None, self.inputs.get('parent'),
            self.inputs.get('polymorphs', {}), self.inputs.paths.get_dict() if 'paths' in self.inputs else None)
        self.ctx.parent = orm.StructureData(ase=parent)
        self.ctx.polymorphs = {name: orm.StructureData(ase=atoms) for name, atoms in polymorphs.items()}
        self.ctx.paths = orm.Dict({'species': definition['species'], 'directions': definition['directions'],
                                   'parent': definition['parent']})
        self.ctx.options = self.inputs.task_options.get_dict() if 'task_options' in self.inputs else {}

    def needs_reference(self):
        return 'reference_values' not in self.inputs

    def has_potential(self):
        return 'potential' in self.inputs

    def needs_test_set(self):
        return 'test_set' not in self.inputs

    def _label(self, structures: dict, name: str):
        inputs = self.exposed_inputs(LabelWorkChain, namespace='labeller')
        inputs['structures'] = structures
        inputs['metadata'] = {'call_link_label': name}
        return self.submit(LabelWorkChain, **inputs)

    def _task(self, model, structures: dict, task: dict, name: str):
        inputs = {'code': self.inputs.task_code, 'model': model, 'structures': structures, 'task': orm.Dict(task),
                  'metadata': {'call_link_label': name, 'options': self.ctx.options}}
        return self.submit(AtomsTaskCalculation, **inputs)

    def _relax_task(self):
        relax = card_settings(self.inputs.parameters)['relax']
        return {'task': 'relax', 'fmax': relax['fmax'], 'max_steps': relax['max_steps'], 'relax_cell': True,
                'keep_symmetry': True}

    def reference_eos(self):
        self.ctx.eos_structures = eos_structures(self.ctx.parent, self.inputs.parameters)
        self.report(f'labeller: {len(self.ctx.eos_structures)} EOS points of the parent and '
                    f'{len(self.ctx.polymorphs)} polymorph relaxations')
        self.to_context(reference_eos=self._label(self.ctx.eos_structures, 'label_eos'))
        engine = self.inputs.labeller.engine.value
        if engine == 'reference':
            model = self.inputs.labeller.reference.get('model', orm.Str('7net-0'))
            self.to_context(reference_relax=self._task(model, self.ctx.polymorphs, self._relax_task(),
                                                       'relax_labeller'))
        else:  # pw.x vc-relaxations after the single points (pw_relax_next), as many at a time as the labels run
            self.ctx.pw_relax_queue = sorted(self.ctx.polymorphs)

    def pw_relaxations_left(self):
        return bool(self.ctx.get('pw_relax_queue'))

    def pw_relax_next(self):
        """The next pw.x vc-relaxations (pw.x keeps the space group through its symmetry operations), at most the
        labeller's ``max_concurrent`` at a time, after the single points: started beside them, the four
        vc-relaxations put six pw.x on the two cores of a laptop (measured here: 26 s per SCF iteration against
        2.5-3.5 s for one pw.x alone, most of it because every mpirun then bound its rank to core 0; ``make setup``
        now unbinds them, ``cli.setup.ensure_unbound_mpirun``)."""
        from aiida_ferromlip.workflows.dft.qe import pw_relax_builder

        qe = self.exposed_inputs(LabelWorkChain, namespace='labeller')['qe']
        relax = card_settings(self.inputs.parameters)['relax']
        size = int(qe.get('max_concurrent', orm.Int(0)).value) or len(self.ctx.pw_relax_queue)
        batch, self.ctx.pw_relax_queue = self.ctx.pw_relax_queue[:size], self.ctx.pw_relax_queue[size:]
        self.report(f'labeller: pw.x vc-relaxations of {", ".join(batch)}'
                    + (f' ({len(self.ctx.pw_relax_queue)} after them)' if self.ctx.pw_relax_queue else ''))
        for name in batch:
            builder = pw_relax_builder(qe, self.ctx.polymorphs[name], meta_convergence=relax['pw_meta_convergence'],
                                       fmax=relax['fmax'])  # as the potential's side (the protocol's is 2x tighter)
            builder.metadata.call_link_label = f'pw_relax_{name}'
            self.to_context(**{f'pw_relax_{name}': self.submit(builder)})

    def inspect_reference_eos(self):
        node = self.ctx.reference_eos
        if 'training_set' not in node.outputs:
            return self.exit_codes.ERROR_REFERENCE_EOS_FAILED.format(detail=node.exit_message)
        self.ctx.reference_labels = {'eos': node.outputs.training_set}
        eos = card_side(node.outputs.training_set, self.inputs.parameters, self.ctx.paths)
        if 'error' in eos['eos'] or not eos['eos']['inside']:
            return self.exit_codes.ERROR_REFERENCE_EOS_FAILED.format(detail=eos['eos'])
        self.ctx.reference_eos_values = eos
        self.report(f"labeller's equilibrium: a = {eos['eos']['lattice']:.4f} Å, B = "
                    f"{eos['eos']['bulk_modulus_GPa']:.0f} GPa")
        return None

    def structures(self):
        if 'reference_values' in self.inputs:
            eos = self.inputs.reference_values
            if not self.needs_labeller_md():  # else given back with the labeller's MD volumes (tabulate)
                self.out('reference_values', eos)
        else:
            eos = self.ctx.reference_eos_values
        given = dict(self.inputs.get('frames', {}))
        mismatch = self._frames_mismatch(given, eos) if given else None
        if given and mismatch is None:
            # every card of a loop has the same frames (the labeller's lattice, the protocol's grids): storing ~45
            # structures again was the largest of the card's own bookkeeping steps (docs/throughput.md, stop 39)
            built = {key: node for key, node in given.items() if not key.startswith('eos_')}
            self.ctx.eos_structures = {key: node for key, node in given.items() if key.startswith('eos_')}
        else:
            if given:
                self.report(f'the given frames are not this card\'s ({mismatch}): built anew')
            if 'eos_structures' not in self.ctx:
                self.ctx.eos_structures = eos_structures(self.ctx.parent, self.inputs.parameters)
            built = card_structures(self.ctx.parent, eos, self.ctx.paths, self.inputs.parameters)
        built = dict(built)
        self.ctx.parent_at_lattice = built.pop('parent_at_lattice')
        self.out('parent_at_lattice', self.ctx.parent_at_lattice)
        self.ctx.point_structures = built

    def _frames_mismatch(self, frames: dict, eos: orm.Dict) -> str | None:
        """Why ``frames`` are not this card's (None when they are): the EOS strains, the paths' images, phonon
        displacements where phonons are asked, and the parent at the labeller's lattice."""
        settings = card_settings(self.inputs.parameters)
        expected = {f'eos_{i:02d}' for i in range(len(settings['eos_strains']))} | {'parent_at_lattice'}
        expected |= {f'path_{name}_{i:02d}' for name in self.ctx.paths.get_dict()['directions']
                     for i in range(len(settings['path_displacements']))}
        missing = sorted(expected - set(frames))
        if missing:
            return f'{len(missing)} frame(s) missing, e.g. {missing[0]}'
        if settings['phonon_points'] and not any(key.startswith('phonon_') for key in frames):
            return 'no phonon displacements'
        atoms = scaled_to_lattice(self.ctx.parent.get_ase(), eos['eos']['lattice'])
        given = frames['parent_at_lattice'].get_ase()
        if len(given) != len(atoms) or not np.allclose(given.cell.array, atoms.cell.array, atol=1e-6):
            return f'their parent is not at the lattice {eos["eos"]["lattice"]:.4f} Å'
        return None

    def reference_points(self):
        self.to_context(reference_points=self._label(self.ctx.point_structures, 'label_points'))
        if not self.has_potential():  # with a potential, beside the potential's own jobs (potential_side)
            self._labeller_md()

    def needs_labeller_md(self) -> bool:
        """The labeller is cheap enough for the stability MD itself (the reference model) and an MD code is given,
        and the labeller's side has no MD volumes yet (a labeller side made by this card, or given without them)."""
        given = self.inputs.get('reference_values')
        return (self.inputs.labeller.engine.value == 'reference' and 'code' in self.inputs.get('sample', {})
                and (given is None or 'stability' not in given.get_dict()))

    def _labeller_md(self):
        """The labeller's NST MD at the stability temperatures: the potential's volumes are judged against the
        labeller's at the same temperatures, from the same start, with the same settings."""
        if not self.needs_labeller_md():
            return
        model = self.inputs.labeller.reference.get('model', orm.Str('7net-0'))
        temperatures = self._stability_temperatures()
        self.report(f'labeller: NST MD at {temperatures} K (the stability item\'s volumes)')
        self.to_context(reference_md=self._md(model, temperatures, 'labeller_md'))

    def _labeller_stability(self) -> orm.Dict | None:
        """The labeller's MD volumes (``stability`` of its side), or None when it ran none or it failed."""
        if 'reference_md' not in self.ctx:
            return None
        md = self.ctx.reference_md
        if not md.is_finished_ok:  # the stability item then falls back to the labeller's relaxed phases
            self.report(f'the labeller\'s MD failed ({md.exit_message}): stability judged against its phases')
            return None
        return md_stability(self.inputs.parameters, self.ctx.md_start, **dict(md.outputs.trajectories),
                            metadata={'call_link_label': 'labeller_stability'})['values']

    def potential_side(self):
        potential = self.inputs.potential
        structures = {**self.ctx.eos_structures, **self.ctx.point_structures}
        if 'test_set' in self.inputs:  # an earlier card's test set: predicted in the same job as the card's points
            tests = self._test_structures(self.inputs.test_set)
            self.ctx.test_with_points = not set(tests) & set(structures)  # (a user's set could reuse a card key)
            if self.ctx.test_with_points:
                structures.update(tests)
        self.to_context(potential_points=self._task(potential, structures, {'task': 'energies'}, 'potential_points'),
                        potential_relax=self._task(potential, self.ctx.polymorphs, self._relax_task(),
                                                   'potential_relax'))
        # the test set's temperatures only where this card draws the test set: with an earlier card's, only the
        # stability item's runs are read (tabulate), and the runs share the cores (half the MD for the
        # `batio3_gap` card's four temperatures)
        temperatures = self._stability_temperatures() if 'test_set' in self.inputs else sorted(
            {*card_settings(self.inputs.parameters)['md_temperatures'], *self._stability_temperatures()})
        self.to_context(potential_md=self._md(potential, temperatures, 'potential_md'))
        self._labeller_md()
        self.report(f'potential: {len(structures)} single points, {len(self.ctx.polymorphs)} relaxations, NST MD at '
                    f'{temperatures} K')

    def _md(self, model, temperatures: list, name: str):
        """The card's NST MD (independent runs at ``temperatures``) with ``model`` from the card's MD start."""
        settings = card_settings(self.inputs.parameters)
        parameters = {'mode': 'remd', 'ensemble': 'nst', 'exchange': False, 'temperatures': temperatures,
                      'steps': settings['md_steps'], 'stride': settings['md_stride'],
                      'timestep_fs': settings['md_timestep_fs'], 'thermostat_tau_fs': 10,
                      'barostat_tau_fs': 1000, 'seed': settings['seed']}
        self.ctx.md_start = self._md_start()
        inputs = self.exposed_inputs(SampleCalculation, namespace='sample')
        inputs.update(potential=model, structure=self.ctx.md_start, parameters=orm.Dict(parameters),
                      metadata={**inputs.get('metadata', {}), 'call_link_label': name})
        return self.submit(SampleCalculation, **inputs)

    def _stability_temperatures(self) -> list:
        settings = card_settings(self.inputs.parameters)
        top = max(settings['md_temperatures'])
        return sorted({top, settings['stability_factor'] * top})

    def _md_start(self) -> orm.StructureData:
        """The image of the last path (e.g. [111]) closest to 0.1 Å off-centre: inside the well of the perovskites
        here, so the MD starts near the labeller's ground state in the path supercell."""
        keys = sorted(k for k in self.ctx.point_structures if k.startswith('path_'))
        displacements = card_settings(self.inputs.parameters)['path_displacements']
        last = keys[-1].rsplit('_', 1)[0]
        index = int(np.argmin(np.abs(np.array(displacements) - 0.1)))
        return self.ctx.point_structures[f'{last}_{index:02d}']

    def collect_reference(self):
        node = self.ctx.reference_points
        labels = [self.ctx.reference_labels['eos']]
        if 'training_set' in node.outputs:
            labels.append(node.outputs.training_set)
        merged = merge_training_sets(**{f'part_{i}': t for i, t in enumerate(labels)}) if len(labels) > 1 else labels[0]
        polymorphs = self._reference_polymorphs()
        stability = self._labeller_stability()
        self.ctx.reference_values = card_side(merged, self.inputs.parameters, self.ctx.paths,
                                              self.ctx.parent_at_lattice, polymorphs,
                                              **({'stability': stability} if stability is not None else {}))
        self.out('reference_values', self.ctx.reference_values)

    def _reference_polymorphs(self) -> orm.Dict:
        parent = orm.Str(self.ctx.paths['parent'])
        if 'reference_relax' in self.ctx:
            node = self.ctx.reference_relax
            if not node.is_finished_ok:
                self.report(f'labeller relaxations failed: {node.exit_message}')
                return orm.Dict({'error': f'{node.process_label}<{node.pk}>: {node.exit_message}'})
            self.ctx.reference_relaxed = dict(node.outputs.structures)
            return polymorph_rows(node.outputs.results, parent)
        outputs, failures = pw_relax_outputs({name: self.ctx[f'pw_relax_{name}'] for name in self.ctx.polymorphs})
        failed = [f'{name}: {reason}' for name, reason in sorted(failures.items())]
        if failed:
            self.report(f'pw.x relaxations failed: {"; ".join(failed)}')
            return orm.Dict({'error': '; '.join(failed)})
        self.ctx.reference_relaxed = {k.split('__')[0]: v for k, v in outputs.items() if k.endswith('__structure')}
        rows = pw_relaxed_polymorphs(**outputs)
        return orm.Dict({'parent': parent.value, 'rows': rows.get_dict()})

    def label_test_set(self):
        node = self.ctx.potential_md
        inputs = {}
        if node.is_finished_ok:
            settings = card_settings(self.inputs.parameters)
            for key, trajectory in node.outputs.trajectories.items():
                temperature = float(key[2:-1])
                if temperature <= max(settings['md_temperatures']):
                    inputs[f'md_{key}'] = trajectory
        else:
            self.report(f'the MD of the potential failed ({node.exit_message}): the test set has no MD frames')
        relaxed = self.ctx.get('reference_relaxed', {})
        inputs.update({f'polymorph_{name}': structure for name, structure in relaxed.items()})
        if not relaxed and 'reference_values' in self.inputs:
            inputs['reference_values'] = self.inputs.reference_values
        structures = test_set_structures(self.inputs.parameters, **inputs)
        self.report(f'independent test set: labelling {len(structures)} frames (random MD frames of the potential, '
                    f'rattled relaxed polymorphs)')
        # the potential predicts the same frames beside the labeller (paired by key at tabulation): one job round
        # trip less on the card's critical path
        self.to_context(test_labels=self._label(structures, 'label_test_set'),
                        potential_test=self._task(self.inputs.potential, dict(structures), {'task': 'energies'},
                                                  'potential_test_set'))

    def predict_test_set(self):
        if 'test_set' in self.inputs:
            test_set = self.inputs.test_set
        else:
            node = self.ctx.test_labels
            if 'training_set' not in node.outputs:
                return self.exit_codes.ERROR_TEST_SET_FAILED.format(detail=node.exit_message)
            test_set = node.outputs.training_set
        self.ctx.test_set = test_set
        self.out('test_set', test_set)
        if self.ctx.get('test_with_points'):  # predicted beside the card's points: no job round trip more
            self.ctx.potential_test = self.ctx.potential_points
            return None
        if 'potential_test' in self.ctx:  # predicted beside the labelling (label_test_set)
            return None
        self.to_context(potential_test=self._task(self.inputs.potential, self._test_structures(test_set),
                                                  {'task': 'energies'}, 'potential_test_set'))
        return None

    @staticmethod
    def _test_structures(test_set: TrainingSet) -> dict:
        """The test set's frames by key (``test_...``, apart from every card structure's key)."""
        return {origin['frame_key']: test_set.get_structure(i) for i, origin in enumerate(test_set.origins)}

    def tabulate(self):
        node = self.ctx.potential_points  # the other jobs' failures become failed rows below
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_POTENTIAL_JOB_FAILED.format(
                detail=f'{node.process_label}<{node.pk}>: {node.exit_message}')
        reference = self.inputs.reference_values if 'reference_values' in self.inputs else self.ctx.reference_values
        if 'reference_values' in self.inputs and self.needs_labeller_md():
            stability = self._labeller_stability()
            if stability is not None:
                reference = with_labeller_stability(reference, stability)
            self.out('reference_values', reference)
        relax = self.ctx.potential_relax
        if relax.is_finished_ok:
            polymorphs = polymorph_rows(relax.outputs.results, orm.Str(self.ctx.paths['parent']))
            relaxed = {f'relaxed_{k}': v for k, v in relax.outputs.structures.items()}
        else:
            polymorphs, relaxed = orm.Dict({'error': f'relaxations failed: {relax.exit_message}'}), {}
        potential = card_side(self.ctx.potential_points.outputs.labels, self.inputs.parameters, self.ctx.paths,
                              self.ctx.parent_at_lattice, polymorphs)
        test = self.ctx.potential_test
        test_errors = (test_set_errors(self.ctx.test_set, test.outputs.labels) if test.is_finished_ok
                       else orm.Dict({'error': f'test-set predictions failed: {test.exit_message}'}))
        md = self.ctx.potential_md
        broken = {}
        if md.is_finished_ok:
            top = min(self._stability_temperatures())
            runs = {k: t for k, t in md.outputs.trajectories.items() if float(k[2:-1]) >= top}
            stability = md_stability(self.inputs.parameters, self.ctx.md_start, **runs)
            stability_values = stability['values']
            broken = {f'broken_{key[len("last_sane_"):]}': node for key, node in stability.items()
                      if key.startswith('last_sane_')}
        else:
            stability_values = orm.Dict({'error': f'the MD failed: {md.exit_message}'})
        potential_values = potential_side(potential, test_errors, stability_values)
        structures = {**self.ctx.point_structures, **self.ctx.eos_structures, **relaxed, **broken,
                      'parent_at_lattice': self.ctx.parent_at_lattice}
        results = physics_card(reference, potential_values, self.inputs.tolerances, self.inputs.parameters,
                               **structures)
        for key in ('card', 'markdown', 'plot'):
            self.out(key, results[key])
        for key, node in results.items():
            if key.startswith('target_'):
                self.out(f'targets.{key[len("target_"):]}', node)
        summary = results['card'].get_dict()
        for row in summary['rows']:
            self.report(f'{"pass" if row["passed"] else "FAIL"} {row["group"]}: {row["item"]}: labeller '
                        f'{card._fmt(row["labeller"])}, potential {card._fmt(row["potential"])} (tolerance '
                        f'{card._fmt(row["tolerance"])}){" - " + row["reason"] if row["reason"] else ""}')
        self.report(f'card: {summary["num_passed"]}/{summary["num_items"]} items pass'
                    + (f'; failing: {", ".join(summary["failed_groups"])}' if summary['failed_groups'] else ''))
        return None
