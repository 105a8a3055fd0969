"""``ReferenceLabelCalculation``: label structures with the reference universal potential (SevenNet-0).

It obeys the labeller contract shared by every engine of the plugin: inputs are a namespace of
``StructureData``; outputs are a ``TrainingSet`` of the frames labelled (each frame's origin names this calculation
and its input structure) and a ``Dict`` of the frames that failed, with reasons.
"""

from __future__ import annotations

from aiida import orm

from aiida_ferromlip.calculations.base import FerromlipCalcJob
from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.exit_codes import declare
from aiida_ferromlip.validation import DEFAULT_MIN_DISTANCE, structure_problems

INPUT_FILE = 'frames.extxyz'
OUTPUT_FILE = 'labelled.extxyz'
REPORT_FILE = 'report.json'


def validate_structures_for_labeller(structures, supported_species, labeller, min_distance=DEFAULT_MIN_DISTANCE):
    """Shared port-validator body: an error message for a bad mapping of ``StructureData``, else ``None``."""
    if not structures:
        return 'no structures were given to label'
    problems = []
    for key, structure in structures.items():
        problems += structure_problems(
            structure.get_ase(),
            label=f'structure `{key}` ({structure.get_formula()})',
            supported_species=supported_species,
            labeller=labeller,
            min_distance=min_distance,
        )
    return '\n'.join(problems) if problems else None


def reference_model_problems(model: str, structures, min_distance: float = DEFAULT_MIN_DISTANCE) -> str | None:
    """Why ``structures`` cannot be labelled by the reference ``model`` (unknown model, species, overlaps...)."""
    from aiida_ferromlip.engines.reference import supported_species

    try:
        species = supported_species(model)
    except ValueError as exception:
        return str(exception)
    return validate_structures_for_labeller(structures, species, f'the reference model {model}', min_distance)


def validate_inputs(inputs, namespace):
    """Fail before submission: unknown model, unsupported species, overlapping atoms, non-periodic cells."""
    if 'structures' not in namespace:
        return None  # exposed in a wrapping workflow without its structures: that workflow validates them
    model = inputs['model'].value if 'model' in inputs else '7net-0'
    settings = inputs['settings'].get_dict() if 'settings' in inputs else {}
    return reference_model_problems(model, inputs.get('structures', {}),
                                    settings.get('min_distance', DEFAULT_MIN_DISTANCE))


class ReferenceLabelCalculation(FerromlipCalcJob):
    """Label a batch of structures with a universal potential shipped offline (energy, forces, stress)."""

    _PARSER = 'ferromlip.reference_label'
    _OUTPUT_FILENAME = 'ferromlip-label.out'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True,
                             help='The structures to label, by any link-label key.')
        spec.input('model', valid_type=orm.Str, default=lambda: orm.Str('7net-0'),
                   help='Reference model shipped in the sevenn wheel (7net-0 = SevenNet-0).')
        spec.input('settings', valid_type=orm.Dict, required=False,
                   help='Optional: `modal` (multi-fidelity models), `max_force` (eV/Å above which a frame is '
                        'rejected, default 1000), `min_distance` (Å, default 0.6).')
        spec.inputs.validator = validate_inputs

        spec.output('training_set', valid_type=TrainingSet, required=False,
                    help='The frames labelled, each with its origin (this calculation, its input structure).')
        spec.output('failed_frames', valid_type=orm.Dict,
                    help='Frames that could not be labelled: `{key: reason}` (empty when all succeeded).')
        spec.output('report', valid_type=orm.Dict, help='Labeller identity, versions and per-frame wall times.')

        declare(spec, 'ERROR_OUTPUT_CORRUPT', 'ERROR_NO_FRAME_DONE')

    def prepare_for_submission(self, folder):
        from ase.io import write

        frames = []
        for key in sorted(self.inputs.structures):
            atoms = self.inputs.structures[key].get_ase()
            atoms.info['frame_key'] = key
            frames.append(atoms)
        with folder.open(INPUT_FILE, 'w') as handle:
            write(handle, frames, format='extxyz')

        settings = self.inputs.settings.get_dict() if 'settings' in self.inputs else {}
        cmdline = ['--input', INPUT_FILE, '--output', OUTPUT_FILE, '--report', REPORT_FILE,
                   '--model', self.inputs.model.value]
        if settings.get('modal'):
            cmdline += ['--modal', str(settings['modal'])]
        if 'max_force' in settings:
            cmdline += ['--max-force', str(float(settings['max_force']))]

        return self.calcinfo(cmdline, [OUTPUT_FILE, REPORT_FILE])
