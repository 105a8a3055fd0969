"""Driver for test_daemon_restart: runs in its own process on a fresh embedded profile (ZeroMQ broker).

Submits the fast loop to the daemon, stops the daemon while the loop waits on a job, starts it again, waits for
the loop to finish, and prints a JSON summary (no structure may have been labelled twice).
"""

import json
import sys
import time

from aiida import load_profile, orm
from aiida.engine import submit


# The daemon/scheduler tests need both iterations to run: the fast GAP of stop 25 can converge after one.
NEVER_CONVERGED = {'energy_meV_per_fu': 0.0, 'forces_meV_per_A': 0.0}


def verdi(*args):
    """`verdi daemon ...` as a user would type it (its own start-up waits are generous)."""
    import os
    import subprocess

    executable = os.path.join(os.path.dirname(sys.executable), 'verdi')
    result = subprocess.run([executable, *args], capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f'verdi {" ".join(args)} failed: {result.stdout} {result.stderr}')


def wait_for(condition, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(2)
    raise TimeoutError(f'timed out waiting for {what}')


def main(profile):
    load_profile(profile)
    from aiida_ferromlip.materials import batio3_polymorphs
    from aiida_ferromlip.workflows.loop.active_learning import ActiveLearningWorkChain

    verdi('daemon', 'start', '1')
    builder = ActiveLearningWorkChain.get_builder_from_protocol(
        orm.load_code('ferromlip-label@localhost'), orm.load_code('ferromlip-gap@localhost'),
        orm.load_code('ferromlip-md@localhost'), structures={'R3m': orm.StructureData(ase=batio3_polymorphs()['R3m'])},
        protocol='fast', overrides={'parameters': {'max_iterations': 2, 'thresholds': NEVER_CONVERGED, 'seed_frames_per_structure': 3},
                                    'select_parameters': {'num_select': 3},
                                    'sample': {'overrides': {'parameters': {'steps': 30, 'stride': 3}}},
                                    'fit': {'gap': {'protocol': 'fast', 'overrides': {'parameters': {'clip_sparse': True}}}}})
    node = submit(builder)

    def sampling_started():
        return any(link.link_label.startswith('sample_000') for link in node.base.links.get_outgoing().all())

    try:
        wait_for(sampling_started, 600, 'the first sampling job')
    except TimeoutError:
        verdi('daemon', 'stop')
        raise
    verdi('daemon', 'stop')
    state_when_stopped = node.process_state.value
    time.sleep(5)
    verdi('daemon', 'start', '1')
    try:
        wait_for(lambda: node.is_terminated, 1200, 'the loop to finish after the restart')
    finally:
        verdi('daemon', 'stop')

    labelled = []
    for calc in node.called_descendants:
        if calc.process_label == 'ReferenceLabelCalculation':
            labelled += [s.uuid for s in calc.inputs.structures.values()]
    print(json.dumps({
        'pk': node.pk, 'state_when_stopped': state_when_stopped, 'exit_status': node.exit_status,
        'labelled': len(labelled), 'distinct_labelled': len(set(labelled)),
        'training_frames': len(node.outputs.training_set) if 'training_set' in node.outputs else None,
        'stop_reason': node.outputs.summary['stop_reason'] if 'summary' in node.outputs else None,
    }))


if __name__ == '__main__':
    main(sys.argv[1])
