"""``PolarizationModelWorkChain``: train and validate the SA-GPR cell-dipole model (BaTiO3-GAP paper) on a TrainingSet.

Dipole labels are an input (``dipoles``: ArrayData ``dipoles`` [n_frames, 3] in e·Å, e.g. Berry-phase cell
dipoles brought to one branch); without them the frames are labelled by the Born-effective-charge model
(``born_charge_dipoles``), which the outputs then name as the label source. The fit, its validation RMSE per cell
and per atom, the learning curve and the parity plot come from the ``fit_polarization_model`` calcfunction.
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import WorkChain

from aiida_ferromlip.calculations.base import ProtocolMixin
from aiida_ferromlip.data.polarization import DEFAULTS, PolarizationModel, born_charge_dipoles, fit_polarization_model
from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.protocols import PROTOCOLS, merged_settings


def validate_inputs(inputs, _):
    if 'training_set' not in inputs:
        return None
    try:
        merged_settings(inputs.get('parameters'), DEFAULTS, 'polarization-model')
    except ValueError as exception:
        return str(exception)
    frames = len(inputs['training_set'])
    if 'dipoles' in inputs:
        shape = inputs['dipoles'].get_array('dipoles').shape
        if shape != (frames, 3):
            return f'the TrainingSet has {frames} frames but `dipoles` has shape {shape}: one 3-vector per frame'
    if frames < 4:
        return f'{frames} frames are too few to train and validate a dipole model'
    return None


class PolarizationModelWorkChain(ProtocolMixin, WorkChain):
    """Fit a PolarizationModel (SA-GPR of cell dipoles) and validate it."""

    @classmethod
    def get_protocol_filepath(cls):
        return PROTOCOLS / 'polarization_model.yaml'

    @classmethod
    def get_builder_from_protocol(cls, training_set: TrainingSet, protocol: str | None = None,
                                  overrides: dict | None = None, *, dipoles: orm.ArrayData | None = None):
        """Builder from ``protocols/polarization_model.yaml`` (fast: zeta 2 | batio3_gap: the paper's linear kernel);
        ``overrides`` as ``{'parameters': {...}}``, merged without mutation."""
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        builder.training_set = training_set
        builder.parameters = orm.Dict(inputs['parameters'])
        if dipoles is not None:
            builder.dipoles = dipoles
        return builder

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('training_set', valid_type=TrainingSet, help='The frames (their labels are not used).')
        spec.input('dipoles', valid_type=orm.ArrayData, required=False,
                   help='Cell dipoles (array `dipoles`, e·Å, one per frame); default: Born-charge model.')
        spec.input('parameters', valid_type=orm.Dict, required=False, help=f'Settings: {sorted(DEFAULTS)}.')
        spec.inputs.validator = validate_inputs
        spec.outline(cls.fit)
        spec.output('model', valid_type=PolarizationModel)
        spec.output('metrics', valid_type=orm.Dict, help='Validation RMSE per cell and per atom, label source.')
        spec.output('learning_curve', valid_type=orm.ArrayData)
        spec.output('plot', valid_type=orm.SinglefileData, help='Parity and learning curve (PNG).')

    def fit(self):
        if 'dipoles' in self.inputs:
            dipoles = self.inputs.dipoles
        else:
            dipoles = born_charge_dipoles(self.inputs.training_set)
            self.report(f'no dipoles given: labels from {dipoles.base.attributes.get("source")}')
        results = fit_polarization_model(self.inputs.training_set, dipoles,
                                         self.inputs.get('parameters', orm.Dict(DEFAULTS)))
        for key, node in results.items():
            self.out(key, node)
        metrics = results['metrics'].get_dict()
        self.report(f'validation RMSE {metrics["rmse_per_cell_e_angstrom"]:.3f} e·Å per cell, '
                    f'{metrics["rmse_per_atom_e_angstrom"]:.4f} per atom (labels spread '
                    f'{metrics["label_std_e_angstrom"]:.3f}) on {metrics["validation_frames"]} frames')
