"""Restart wrappers for the plugin's own jobs, as aiida-quantumespresso's ``PwBaseWorkChain`` is for pw.x.

Each wrapper is a ``BaseRestartWorkChain`` that runs its job, and on a failure its handler knows how to rescue
changes the inputs that caused it and runs the job again (``max_iterations`` times at most); any other failure
ends the wrapper with AiiDA's ``ERROR_UNHANDLED_FAILURE`` and the job's own message in the report.

* ``GapFitBaseWorkChain`` — gap_fit ran out of memory (``ERROR_OUT_OF_MEMORY``): the memory budget
  (``max_memory_gb``) is set to half the peak gap_fit's dry run predicted for the failed fit, so the fit's memory
  plan keeps the virials of fewer frames (they cost twice what forces cost, docs/gap.md); when no frame had a
  virial left to drop the wrapper stops. (A singular covariance matrix is not handled: this QUIP build solves the
  sparse system by QR, and a rank-deficient system — identical frames, ``sparse_jitter`` 0 — was solved without
  error here, so no failure could be provoked to test a handler against.)
* ``NequipTrainBaseWorkChain`` — the loss became NaN (``ERROR_NAN_LOSS``): the learning rate (the config's
  optimizer ``lr``) is divided by ``lr_factor`` (10 by default) and the training starts again.
* ``SampleBaseWorkChain`` — the MD blew up (``ERROR_MD_BLOW_UP``: two atoms closer than the parameters'
  ``stop_below_distance``): the timestep is halved and the run starts again from the same structure (with several
  replicas there is no one "last good frame" to continue from, and a restart from the start keeps the trajectory
  one run at one timestep), until ``min_timestep_fs``. The active-learning loop does not use this wrapper: there a
  blown-up run is a finding (selection rejects its frames, the card's stability item fails), not a failure.
"""

from __future__ import annotations

import copy

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ProcessHandlerReport, process_handler, while_

from aiida_ferromlip.calculations.gap_fit import GapFitCalculation
from aiida_ferromlip.calculations.nequip_train import NequipTrainCalculation
from aiida_ferromlip.calculations.sample import SampleCalculation


class _JobRestartWorkChain(BaseRestartWorkChain):
    """What the wrappers share: the job's inputs exposed in a namespace, its outputs exposed, the usual outline."""

    _abstract = True
    _namespace = ''

    @classmethod
    def define(cls, spec):
        super().define(spec)
        if cls._process_class is not None:  # the concrete wrappers
            cls.define_wrapper(spec)

    @classmethod
    def define_wrapper(cls, spec):
        spec.expose_inputs(cls._process_class, namespace=cls._namespace)
        spec.expose_outputs(cls._process_class)
        spec.outline(cls.setup, while_(cls.should_run_process)(cls.run_process, cls.inspect_process), cls.results)

    def setup(self):
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(self._process_class, self._namespace))

    def report_error_handled(self, node, action: str) -> None:
        self.report(f'{node.process_label}<{node.pk}> failed with exit status {node.exit_status}: '
                    f'{node.exit_message}')
        self.report(f'action taken: {action}')


class GapFitBaseWorkChain(_JobRestartWorkChain):
    """A ``GapFitCalculation`` restarted with a lower memory budget when gap_fit runs out of memory."""

    _process_class = GapFitCalculation
    _namespace = 'gap_fit'

    @process_handler(priority=500, exit_codes=[GapFitCalculation.exit_codes.ERROR_OUT_OF_MEMORY])
    def handle_out_of_memory(self, node):
        """Half the dry run's predicted peak becomes the budget: the memory plan drops virials to meet it."""
        plan = node.outputs.fit_report.get_dict().get('memory_plan') if 'fit_report' in node.outputs else None
        if not plan or not plan.get('virial_fraction'):
            self.report_error_handled(node, 'none: no frame kept a virial that could be dropped')
            return ProcessHandlerReport(True, self.exit_codes.ERROR_UNHANDLED_FAILURE)
        parameters = dict(self.ctx.inputs.parameters.get_dict())
        parameters['max_memory_gb'] = 0.5 * plan['estimated_peak_bytes'] / 1024**3
        self.ctx.inputs.parameters = orm.Dict(parameters)
        self.report_error_handled(node, f'memory budget lowered to {parameters["max_memory_gb"]:.3f} GiB (half the '
                                        f'predicted peak of {plan["estimated_peak_bytes"] / 1024**3:.3f} GiB with '
                                        f'{plan["virial_fraction"]:.0%} of the virials): fewer virials are kept')
        return ProcessHandlerReport(True)


class NequipTrainBaseWorkChain(_JobRestartWorkChain):
    """A ``NequipTrainCalculation`` restarted with a lower learning rate when the loss turns NaN."""

    _process_class = NequipTrainCalculation
    _namespace = 'nequip'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('lr_factor', valid_type=orm.Float, default=lambda: orm.Float(10.0),
                   validator=lambda value, _: None if value.value > 1 else '`lr_factor` must be above 1',
                   help='The learning rate is divided by this after a NaN loss.')

    @process_handler(priority=500, exit_codes=[NequipTrainCalculation.exit_codes.ERROR_NAN_LOSS])
    def handle_nan_loss(self, node):
        """Divide the optimizer's learning rate by ``lr_factor`` and train again from scratch."""
        config = copy.deepcopy(self.ctx.inputs.config.get_dict())
        optimizer = config['training_module']['optimizer']
        old = float(optimizer['lr'])
        optimizer['lr'] = old / self.inputs.lr_factor.value
        self.ctx.inputs.config = orm.Dict(config)
        self.report_error_handled(node, f'learning rate lowered from {old:g} to {optimizer["lr"]:g}')
        return ProcessHandlerReport(True)


class SampleBaseWorkChain(_JobRestartWorkChain):
    """A ``SampleCalculation`` restarted with half the timestep when the MD blows up."""

    _process_class = SampleCalculation
    _namespace = 'sample'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('min_timestep_fs', valid_type=orm.Float, default=lambda: orm.Float(0.25),
                   help='No restart below this timestep: a run that still blows up is the potential\'s fault.')

    @process_handler(priority=500, exit_codes=[SampleCalculation.exit_codes.ERROR_MD_BLOW_UP])
    def handle_blow_up(self, node):
        """Halve the timestep and run again from the start structure."""
        parameters = dict(self.ctx.inputs.parameters.get_dict())
        old = float(parameters.get('timestep_fs', 2.0))
        if old / 2 < self.inputs.min_timestep_fs.value:
            self.report_error_handled(node, f'none: half of {old:g} fs is below min_timestep_fs '
                                            f'{self.inputs.min_timestep_fs.value:g} fs')
            return ProcessHandlerReport(True, self.exit_codes.ERROR_UNHANDLED_FAILURE)
        parameters['timestep_fs'] = old / 2
        self.ctx.inputs.parameters = orm.Dict(parameters)
        self.report_error_handled(node, f'timestep halved from {old:g} to {old / 2:g} fs, same start structure')
        return ProcessHandlerReport(True)
