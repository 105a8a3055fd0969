"""The restart wrappers of the plugin's own jobs, each shown rescuing a failure provoked for real."""

import os
import subprocess
import sys

import numpy as np
from aiida import orm
from aiida.engine import run_get_node

from aiida_ferromlip.calculations.gap_fit import GapFitCalculation
from aiida_ferromlip.calculations.nequip_train import NequipTrainCalculation
from aiida_ferromlip.calculations.sample import SampleCalculation
from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.engines.gap import GAP_FIT_VARIABLE, gap_fit_executable
from aiida_ferromlip.materials import batio3_polymorphs
from aiida_ferromlip.workflows.restart import GapFitBaseWorkChain, NequipTrainBaseWorkChain, SampleBaseWorkChain

from .conftest import executable

#: Address space given to gap_fit above what the interpreter with quippy maps before fitting (kB). Measured on the
#: 16 test frames (14 fitted): the fit with every virial fails below ~+55 MB and succeeds at +65 MB; with 23 % of the
#: virials (what the handler's halved budget keeps) it succeeds at +30 MB. +40 MB sits in the middle.
HEADROOM_KB = 40_000


def _jobs(node):
    return sorted(node.called, key=lambda n: n.ctime)


def _address_space_of_quippy_kb() -> int:
    script = ("import re; from quippy.cli import gap_fit; "
              "print(re.search(r'VmPeak:\\s+(\\d+)', open('/proc/self/status').read()).group(1))")
    return int(subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, check=True).stdout)


def test_gap_fit_out_of_memory_is_rescued_by_dropping_virials(aiida_code_installed, reference_frames, tmp_path):
    """gap_fit under a hard address-space limit (a wrapper script named by $FERROMLIP_GAP_FIT) runs out of memory
    for real with every virial; the wrapper halves the memory budget, the fit's plan keeps fewer virials, and the
    second fit succeeds under the same limit."""
    code = aiida_code_installed(label='ferromlip-gap', default_calc_job_plugin='ferromlip.gap_fit',
                                filepath_executable=executable('ferromlip-gap'))
    limit = _address_space_of_quippy_kb() + HEADROOM_KB
    script = tmp_path / 'gap_fit_limited'
    script.write_text(f'#!/bin/bash\nulimit -v {limit}\nexec {gap_fit_executable()} "$@"\n')
    os.chmod(script, 0o755)
    training_set = TrainingSet(frames=reference_frames).store()
    fit = GapFitCalculation.get_builder_from_protocol(code, training_set, protocol='fast')
    builder = GapFitBaseWorkChain.get_builder()
    builder.gap_fit = {key: fit[key] for key in fit}
    builder.gap_fit.metadata.options.prepend_text = f'export {GAP_FIT_VARIABLE}={script}'
    results, node = run_get_node(builder)

    assert node.is_finished_ok, node.exit_message
    first, second = _jobs(node)
    assert first.exit_status == GapFitCalculation.exit_codes.ERROR_OUT_OF_MEMORY.status, first.exit_message
    assert 'allocat' in first.exit_message.lower()
    failed_plan = first.outputs.fit_report['memory_plan']
    assert failed_plan['virial_fraction'] == 1.0
    assert second.inputs.parameters['max_memory_gb'] * 1024**3 == 0.5 * failed_plan['estimated_peak_bytes']
    plan = second.outputs.fit_report['memory_plan']
    assert 0 < plan['virial_fraction'] < 1 and plan['estimated_peak_bytes'] <= plan['budget_bytes']
    assert results['potential'].uuid == second.outputs.potential.uuid
    assert 'fewer virials are kept' in ' '.join(log.message for log in orm.Log.collection.get_logs_for(node))


def test_nequip_nan_loss_is_rescued_by_a_lower_learning_rate(aiida_code_installed, reference_frames):
    """A learning rate of 100 makes Allegro's loss NaN in the first epoch (measured; 1e6 too); the wrapper divides
    it by 1e4 and the training finishes with a finite loss."""
    code = aiida_code_installed(label='ferromlip-nequip', default_calc_job_plugin='ferromlip.nequip_train',
                                filepath_executable=executable('ferromlip-nequip'))
    training_set = TrainingSet(frames=reference_frames).store()
    train = NequipTrainCalculation.get_builder_from_protocol(
        code, training_set, protocol='fast', overrides={'training': {'max_epochs': 1, 'learning_rate': 100.0}})
    builder = NequipTrainBaseWorkChain.get_builder()
    builder.nequip = {key: train[key] for key in train}
    builder.lr_factor = orm.Float(1e4)
    results, node = run_get_node(builder)

    assert node.is_finished_ok, node.exit_message
    first, second = _jobs(node)
    assert first.exit_status == NequipTrainCalculation.exit_codes.ERROR_NAN_LOSS.status, first.exit_message
    rates = [job.inputs.config['training_module']['optimizer']['lr'] for job in (first, second)]
    assert rates == [100.0, 0.01]
    curve = results['learning_curve']
    assert np.all(np.isfinite(curve.get_array('train_loss'))) and np.all(np.isfinite(curve.get_array('validation_loss')))
    assert np.isclose(curve.get_array('learning_rate')[0], 0.01)
    assert results['potential'].uuid == second.outputs.potential.uuid


def test_md_blow_up_is_rescued_by_a_shorter_timestep(aiida_code_installed, gap_potential):
    """16 fs steps at 300 and 600 K make the test GAP's R3m cell blow up (two atoms come closer than 1.2 Å; measured
    0.64 Å); the wrapper halves the timestep and the 8 fs run ends with no pair closer than that in any frame."""
    from ase.neighborlist import neighbor_list

    code = aiida_code_installed(label='ferromlip-md', default_calc_job_plugin='ferromlip.sample',
                                filepath_executable=executable('ferromlip-md'))
    sample = SampleCalculation.get_builder_from_protocol(
        code, gap_potential, orm.StructureData(ase=batio3_polymorphs()['R3m']), protocol='fast',
        overrides={'parameters': {'temperatures': [300, 600], 'exchange': False, 'steps': 60, 'stride': 10,
                                  'timestep_fs': 16.0, 'stop_below_distance': 1.2}})
    builder = SampleBaseWorkChain.get_builder()
    builder.sample = {key: sample[key] for key in sample}
    builder.min_timestep_fs = orm.Float(4.0)
    results, node = run_get_node(builder)

    assert node.is_finished_ok, node.exit_message
    first, second = _jobs(node)
    assert first.exit_status == SampleCalculation.exit_codes.ERROR_MD_BLOW_UP.status, first.exit_message
    assert 'Å apart' in first.exit_message
    assert [job.inputs.parameters['timestep_fs'] for job in (first, second)] == [16.0, 8.0]
    for trajectory in results['trajectories'].values():
        for index in range(trajectory.numsteps):
            assert not len(neighbor_list('d', trajectory.get_step_structure(index).get_ase(), 1.2))


def test_stop_below_distance_is_checked_before_the_job(gap_potential):
    from aiida_ferromlip.calculations.sample import parameter_problems

    base = {'mode': 'remd', 'temperatures': [300, 600], 'steps': 10}
    assert parameter_problems({**base, 'stop_below_distance': 1.2}, gap_potential) == []
    for bad in (0, -1, 3.0, 'close'):
        assert any('stop_below_distance' in p for p in parameter_problems({**base, 'stop_below_distance': bad},
                                                                           gap_potential))
