"""``InterpolationBenchmarkWorkChain``: the potential's errors on frames of MD trajectories (minimalist paper, Fig. 2).

A share of each trajectory's frames (1 % by default, equispaced in time) is labelled by the reference engine and
by the potential; the outputs are the error metrics (RMSE/MAE of energy per formula unit, force components,
stress components), the normalised error histograms (ArrayData) and their plot (PNG).
"""

from __future__ import annotations

import io

import numpy as np
from aiida import orm
from aiida.engine import WorkChain, calcfunction

from aiida_ferromlip.analysis.errors import EV_A3_TO_KBAR, error_metrics
from aiida_ferromlip.analysis.plots import figure_png
from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.exit_codes import declare
from aiida_ferromlip.workflows.benchmarks.common import ReferenceMixin, default_inputs, merged_settings
from aiida_ferromlip.data.training_set import trajectory_frames

PROTOCOL = 'interpolation'  # protocols/interpolation.yaml: the work chain's protocols and these defaults
DEFAULTS = default_inputs(PROTOCOL)['parameters']


def interpolation_parameters(parameters: orm.Dict | None) -> dict:
    merged = merged_settings(parameters, DEFAULTS, 'interpolation')
    if not 0 < merged['fraction'] <= 1:
        raise ValueError(f'`fraction` must be in (0, 1], got {merged["fraction"]}')
    return merged


def equispaced(num_frames: int, fraction: float, minimum: int) -> list[int]:
    """``fraction`` of ``num_frames`` indices, equispaced and centred in the trajectory (at least ``minimum``)."""
    count = min(num_frames, max(minimum, int(round(fraction * num_frames))))
    if count == 0:
        return []
    stride = num_frames / count
    return sorted({int(stride * (i + 0.5)) for i in range(count)})


def validate_inputs(inputs, _):
    if 'potential' not in inputs:
        return None
    try:
        interpolation_parameters(inputs.get('parameters'))
    except ValueError as exception:
        return str(exception)
    trajectories = inputs.get('trajectories', {})
    if not trajectories:
        return 'no trajectories were given'
    species = set(inputs['potential'].species)
    for key, trajectory in trajectories.items():
        missing = sorted(set(trajectory.symbols) - species)
        if missing:
            return f'trajectory `{key}` has {", ".join(missing)}, which the potential does not know'
    return None


@calcfunction
def pick_frames(parameters: orm.Dict, **trajectories: orm.TrajectoryData) -> dict:
    """The equispaced frames of every trajectory, as ``<trajectory>_<step>`` structures."""
    settings = interpolation_parameters(parameters)
    picked = {}
    for key in sorted(trajectories):
        frames = trajectory_frames(trajectories[key])
        for index in equispaced(len(frames), settings['fraction'], settings['min_frames_per_trajectory']):
            picked[f'{key}_{index:06d}'] = orm.StructureData(ase=frames[index])
    return picked


@calcfunction
def error_histograms(reference: TrainingSet, predicted: TrainingSet, parameters: orm.Dict) -> dict:
    """Metrics, normalised histograms and their plot of the potential's errors (``predicted``: its labels of the
    same frames, paired by key) on the ``reference`` labels."""
    from aiida_ferromlip.analysis.errors import labels_from_pairs

    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    settings = interpolation_parameters(parameters)
    reference_frames, predicted_frames = reference.frames_by_key(), predicted.frames_by_key()
    keys = sorted(set(reference_frames) & set(predicted_frames))
    labels = labels_from_pairs([reference_frames[k] for k in keys], [predicted_frames[k] for k in keys])
    errors = {
        'energy_meV_per_fu': 1000 * (labels['pred_energy'] - labels['ref_energy']) / labels['n_fu'],
        'force_components_meV_per_A': 1000 * (labels['pred_forces'] - labels['ref_forces']).ravel(),
        'stress_components_kbar': EV_A3_TO_KBAR * (labels['pred_stress'] - labels['ref_stress']).ravel(),
    }
    metrics = error_metrics(labels)
    histograms = orm.ArrayData()
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for axis, (name, values) in zip(axes, errors.items()):
        histograms.set_array(f'{name}_errors', values)
        if values.size:
            density, edges = np.histogram(values, bins=settings['bins'], density=True)
            histograms.set_array(f'{name}_density', density)
            histograms.set_array(f'{name}_edges', edges)
            axis.stairs(density, edges, fill=True, alpha=0.6)
            rmse = float(np.sqrt(np.mean(values**2)))
            axis.set_title(f'RMSE {rmse:.3g}, MAE {float(np.mean(np.abs(values))):.3g}', fontsize=9)
        axis.set_xlabel(name.replace('_', ' ').replace('meV per fu', 'meV/f.u.').replace('meV per A', 'meV/Å'))
        axis.set_ylabel('normalised count')
    figure.suptitle(f'errors on {len(keys)} frames picked from the trajectories')
    png = figure_png(figure, dpi=100)
    return {'metrics': orm.Dict(metrics), 'histograms': histograms,
            'plot': orm.SinglefileData(io.BytesIO(png), filename='interpolation_errors.png')}


class InterpolationBenchmarkWorkChain(ReferenceMixin, WorkChain):
    """Errors of a potential on equispaced frames of MD trajectories, against a reference labeller."""

    _PROTOCOL_FILE = f'{PROTOCOL}.yaml'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        cls.define_benchmark(spec)
        spec.input_namespace('trajectories', valid_type=orm.TrajectoryData, dynamic=True,
                             help='MD trajectories (e.g. the SampleCalculation outputs of a loop).')
        spec.inputs.validator = validate_inputs
        spec.outline(cls.pick, cls.label, cls.compare)
        spec.output('metrics', valid_type=orm.Dict, help='RMSE/MAE: meV/f.u., meV/atom, meV/Å, kbar.')
        spec.output('histograms', valid_type=orm.ArrayData, help='Errors and their normalised histograms.')
        spec.output('plot', valid_type=orm.SinglefileData, help='Error histograms (PNG).')
        spec.output('reference_labels', valid_type=TrainingSet, help='The reference labels of the picked frames.')
        declare(spec, 'ERROR_REFERENCE_FAILED')

    def pick(self):
        self.ctx.parameters = self.inputs.get('parameters', orm.Dict(DEFAULTS))
        self.ctx.frames = pick_frames(self.ctx.parameters, **self.inputs.trajectories)
        self.report(f'{len(self.ctx.frames)} frame(s) picked from {len(self.inputs.trajectories)} trajectory(ies)')

    def label(self):
        self.submit_task(self.ctx.frames, {'task': 'energies'}, 'potential_labels')
        return self.submit_reference(self.ctx.frames)

    def compare(self):
        failed_task = self.task_failed()
        if failed_task:
            return failed_task
        node = self.ctx.reference
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_REFERENCE_FAILED.format(detail=node.exit_message)
        reference = node.outputs.training_set
        failed = node.outputs.failed_frames.get_dict()
        if failed:
            self.report(f'{len(failed)} frame(s) the reference could not label are left out: {sorted(failed)}')
        results = error_histograms(reference, self.ctx.task.outputs.labels, self.ctx.parameters)
        self.out('reference_labels', reference)
        for key in ('metrics', 'histograms', 'plot'):
            self.out(key, results[key])
        metrics = results['metrics'].get_dict()
        self.report(f'{metrics["num_frames"]} frames: energy RMSE {metrics["energy_per_fu_meV_rmse"]:.2f} meV/f.u., '
                    f'forces {metrics["forces_meV_per_A_rmse"]:.0f} meV/Å, stress {metrics["stress_kbar_rmse"]:.2f} kbar')
        return None
