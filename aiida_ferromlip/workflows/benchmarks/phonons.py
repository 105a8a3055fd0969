"""``PhononBenchmarkWorkChain``: phonons of a reference phase with a potential and with a reference (minimalist paper, Fig. 3).

Finite displacements in a supercell (phonopy); the reference forces come from the ``LabelWorkChain`` (any engine:
DFT or the reference labeller), the potential's from an ``AtomsTaskCalculation`` job. Both sets of forces
are TrainingSets, so the comparison has provenance back to every labelling calculation. Outputs: the two band
structures along seekpath's standard path, their overlay (PNG), the frequency RMSE (THz) and the unstable modes
of each — and whether the potential misses an instability of the reference or adds a spurious one.
"""

from __future__ import annotations

import io

import numpy as np
from aiida import orm
from aiida.engine import WorkChain, calcfunction

from aiida_ferromlip.analysis import phonons
from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.exit_codes import declare
from aiida_ferromlip.validation import cell_height
from aiida_ferromlip.workflows.benchmarks.common import ReferenceMixin, default_inputs, merged_settings

PROTOCOL = 'phonons'  # protocols/phonons.yaml: the work chain's protocols and these defaults
DEFAULTS = default_inputs(PROTOCOL)['parameters']


def phonon_parameters(parameters: orm.Dict | None) -> dict:
    return merged_settings(parameters, DEFAULTS, 'phonon')


def supercell_problem(structure: orm.StructureData, supercell, cutoff: float | None) -> str | None:
    """A finite-displacement supercell must be at least twice the potential's cutoff high, or the force
    constants of distant pairs fold onto near ones."""
    if not cutoff:
        return None
    atoms = structure.get_ase().repeat(tuple(int(n) for n in supercell))
    height = cell_height(atoms.cell.array)
    if height < 2 * cutoff:
        unit = cell_height(structure.get_ase().cell.array)
        needed = int(np.ceil(2 * cutoff / unit))
        return (f'the {"x".join(map(str, supercell))} supercell is {height:.2f} Å high, less than twice the '
                f"potential's cutoff ({cutoff} Å): use at least a {needed}x{needed}x{needed} supercell, or set "
                f'`allow_small_supercell: true` to accept folded force constants')
    return None


def validate_inputs(inputs, _):
    if 'potential' not in inputs or 'structure' not in inputs:
        return None
    try:
        parameters = phonon_parameters(inputs.get('parameters'))
    except ValueError as exception:
        return str(exception)
    potential, structure = inputs['potential'], inputs['structure']
    missing = sorted(set(structure.get_ase().get_chemical_symbols()) - set(potential.species))
    if missing:
        return f'the potential has no {", ".join(missing)} (it knows {", ".join(potential.species)})'
    if not parameters['allow_small_supercell']:
        return supercell_problem(structure, parameters['supercell'], potential.base.attributes.get('cutoff', None))
    return None


@calcfunction
def phonon_supercells(structure: orm.StructureData, parameters: orm.Dict) -> dict:
    """aiida-phonopy's ``PreProcessData`` (unit cell, supercell matrix, phonopy's displacement dataset) as
    ``preprocess``, and the displaced supercells as ``disp_000``, ``disp_001``... (phonopy's order)."""
    from aiida_phonopy.data import PreProcessData

    settings = phonon_parameters(parameters)
    preprocess = PreProcessData(structure=structure, supercell_matrix=np.diag(settings['supercell']).tolist(),
                                primitive_matrix='auto')
    preprocess.set_displacements(distance=settings['distance'])
    cells = preprocess.get_supercells_with_displacements()  # supercell_1, supercell_2, ...
    ordered = sorted(cells, key=lambda key: int(key.rsplit('_', 1)[1]))
    return {'preprocess': preprocess,
            **{f'disp_{index:03d}': cells[key].clone() for index, key in enumerate(ordered)}}


@calcfunction
def compare_phonons(preprocess: orm.Data, parameters: orm.Dict, reference: TrainingSet, model: TrainingSet) -> dict:
    """Both sides as aiida-phonopy ``PhonopyData`` (the displacement dataset with each side's forces: reusable with
    aiida-phonopy's own tools), their bands, overlay, the frequency RMSE and the unstable modes of each."""
    from aiida_phonopy.data import PhonopyData

    settings = phonon_parameters(parameters)
    structure = preprocess.get_unitcell()
    results, phonopy_data = {}, {}
    for name, training_set in (('reference', reference), ('potential', model)):
        forces = {key: frame.get_forces() for key, frame in training_set.frames_by_key().items()}
        data = PhonopyData(preprocess_data=preprocess)
        data.set_forces(sets_of_forces=[forces[key] for key in sorted(forces)])
        phonopy_data[f'{name}_phonopy'] = data
        results[name] = phonons.band_structure(data.get_phonopy_instance(), settings['npoints'])
    unstable = {name: phonons.unstable_modes(result, settings['unstable_below_thz']) for name, result in results.items()}
    missed = sorted(set(unstable['reference']) - set(unstable['potential']))
    spurious = sorted(set(unstable['potential']) - set(unstable['reference']))
    summary = {'frequency_rmse_thz': phonons.frequency_rmse(results['reference'], results['potential']),
               'unstable_modes_reference': unstable['reference'], 'unstable_modes_potential': unstable['potential'],
               'instabilities_missed': missed, 'instabilities_spurious': spurious,
               'same_instabilities': not missed and not spurious,
               'path': results['reference']['ticks'], 'supercell': settings['supercell'],
               'num_displacements': len(reference)}
    bands = orm.ArrayData()
    for name, result in results.items():
        bands.set_array(f'{name}_frequencies', np.concatenate(result['frequencies']))
        bands.set_array(f'{name}_vertex_frequencies', result['vertex_frequencies'])
    bands.set_array('distances', np.concatenate(results['reference']['distances']))
    bands.set_array('vertices', results['reference']['vertices'])
    bands.base.attributes.set('vertex_labels', results['reference']['labels'])
    png = phonons.overlay_png(results['reference'], results['potential'],
                              f'{structure.get_formula()} phonons, {"x".join(map(str, settings["supercell"]))} '
                              f'supercell: RMSE {summary["frequency_rmse_thz"]:.2f} THz')
    return {'summary': orm.Dict(summary), 'bands': bands, **phonopy_data,
            'plot': orm.SinglefileData(io.BytesIO(png), filename='phonons.png')}


class PhononBenchmarkWorkChain(ReferenceMixin, WorkChain):
    """Phonons of a reference phase with a potential and with a reference labeller, compared."""

    _PROTOCOL_FILE = f'{PROTOCOL}.yaml'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        cls.define_benchmark(spec)
        spec.input('structure', valid_type=orm.StructureData,
                   help='The reference phase in its unit cell (e.g. cubic BaTiO3; cubic fluorite for HfO2).')
        spec.inputs.validator = validate_inputs
        spec.outline(cls.displace, cls.label, cls.compare)
        spec.output('summary', valid_type=orm.Dict, help='Frequency RMSE (THz), unstable modes of each, missed/spurious.')
        spec.output('bands', valid_type=orm.ArrayData, help='Both band structures along the path.')
        spec.output('plot', valid_type=orm.SinglefileData, help='Overlay of the two band structures (PNG).')
        spec.output('reference_forces', valid_type=TrainingSet, help='Reference labels of the displaced supercells.')
        spec.output('reference_phonopy', valid_type=orm.Data,
                    help="aiida-phonopy's PhonopyData with the reference's forces (`get_phonopy_instance()`).")
        spec.output('potential_phonopy', valid_type=orm.Data,
                    help="aiida-phonopy's PhonopyData with the potential's forces.")
        declare(spec, 'ERROR_REFERENCE_FAILED')

    def displace(self):
        parameters = self.inputs.get('parameters', orm.Dict(DEFAULTS))
        self.ctx.parameters = parameters
        self.ctx.supercells = dict(phonon_supercells(self.inputs.structure, parameters))
        self.ctx.preprocess = self.ctx.supercells.pop('preprocess')
        self.report(f'{len(self.ctx.supercells)} displaced supercell(s) to label')

    def label(self):
        self.submit_task(self.ctx.supercells, {'task': 'energies'}, 'potential_forces')
        return self.submit_reference(self.ctx.supercells)

    def compare(self):
        failed_task = self.task_failed()
        if failed_task:
            return failed_task
        node = self.ctx.reference
        failed = node.outputs.failed_frames.get_dict() if 'failed_frames' in node.outputs else {}
        if not node.is_finished_ok or failed:
            return self.exit_codes.ERROR_REFERENCE_FAILED.format(detail=failed or node.exit_message)
        reference = node.outputs.training_set
        results = compare_phonons(self.ctx.preprocess, self.ctx.parameters, reference, self.ctx.task.outputs.labels)
        self.out('reference_forces', reference)
        for key in ('summary', 'bands', 'plot', 'reference_phonopy', 'potential_phonopy'):
            self.out(key, results[key])
        summary = results['summary'].get_dict()
        self.report(f'frequency RMSE {summary["frequency_rmse_thz"]:.2f} THz; unstable (reference) '
                    f'{summary["unstable_modes_reference"]}; unstable (potential) {summary["unstable_modes_potential"]}')
        return None
