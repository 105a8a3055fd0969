"""Driver of the production-path checks (tests/test_production.py, benchmarks/production_loops.py): runs in its own
process on a PostgreSQL + RabbitMQ profile whose codes sit on a SLURM computer (setup_profiles/production.py).

    python tests/production_driver.py PROFILE kill      # one fast loop; the daemon is SIGKILLed mid-way
    python tests/production_driver.py PROFILE loops N   # N fast loops submitted at once

Prints one JSON line: the loops' states and exit codes, every CalcJob's SLURM job id and what ``sacct`` recorded in
its working directory, the daemon's worker count and the wall time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from aiida import load_profile, orm
from aiida.engine import submit

COMPUTER = 'localhost-slurm'


# The daemon/scheduler tests need both iterations to run: the fast GAP of stop 25 can converge after one.
NEVER_CONVERGED = {'energy_meV_per_fu': 0.0, 'forces_meV_per_A': 0.0}


def verdi(*args, check=True):
    """`verdi -p <the loaded profile> ...`, as a user would type it."""
    from aiida.manage import get_manager

    executable = os.path.join(os.path.dirname(sys.executable), 'verdi')
    profile = get_manager().get_profile().name
    result = subprocess.run([executable, '-p', profile, *args], capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise RuntimeError(f'verdi {" ".join(args)} failed: {result.stdout} {result.stderr}')
    return result.stdout


def wait_for(condition, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(3)
    raise TimeoutError(f'timed out waiting for {what}')


def loop_builder(seed: int):
    from aiida_ferromlip.materials import batio3_polymorphs
    from aiida_ferromlip.workflows.loop.active_learning import ActiveLearningWorkChain

    codes = [orm.load_code(f'{label}@{COMPUTER}') for label in ('ferromlip-label', 'ferromlip-gap', 'ferromlip-md')]
    return ActiveLearningWorkChain.get_builder_from_protocol(
        *codes, structures={'R3m': orm.StructureData(ase=batio3_polymorphs()['R3m'])}, protocol='fast',
        overrides={'parameters': {'max_iterations': 2, 'thresholds': NEVER_CONVERGED, 'seed_frames_per_structure': 3, 'seed': seed},
                   'select_parameters': {'num_select': 3},
                   'sample': {'overrides': {'parameters': {'steps': 30, 'stride': 3}}},
                   'fit': {'gap': {'protocol': 'fast', 'overrides': {'parameters': {'clip_sparse': True}}}}})


def daemon_pids(profile: str, role: str = '') -> list[int]:
    """Processes of this profile's daemon: the circus arbiter (``daemon start-circus``) and its workers
    (``daemon worker``); ``role`` narrows to one of them."""
    pattern = f'-p {profile} daemon {role}'.strip()
    found = subprocess.run(['pgrep', '-f', '--', pattern], capture_output=True, text=True).stdout.split()
    return sorted(int(pid) for pid in found if int(pid) != os.getpid())


def process_tree(pids: list[int]) -> list[int]:
    """``pids`` and all their descendants (the circus arbiter's workers and its stats process)."""
    tree, frontier = set(pids), list(pids)
    while frontier:
        children = subprocess.run(['ps', '-o', 'pid=', '--ppid', str(frontier.pop())], capture_output=True,
                                  text=True).stdout.split()
        for child in map(int, children):
            if child not in tree:
                tree.add(child)
                frontier.append(child)
    return sorted(tree)


def worker_count(profile: str) -> int:
    return len(daemon_pids(profile, 'worker'))


def sacct_states() -> dict[str, list[str]]:
    """SLURM accounting: working directory -> ``jobid:state`` of every allocation that ran there. Each CalcJob has
    its own directory, so two allocations under one directory mean the CalcJob was submitted twice (job names,
    ``aiida-<pk>``, repeat across profiles and are no key)."""
    out = subprocess.run(['sacct', '-a', '-X', '-n', '-P', '-S', 'now-1days', '-o', 'JobID,State,WorkDir'],
                         capture_output=True, text=True, check=True).stdout
    jobs: dict[str, list[str]] = {}
    for line in out.splitlines():
        job_id, state, workdir = line.split('|', 2)
        jobs.setdefault(os.path.normpath(workdir), []).append(f'{job_id}:{state}')
    return jobs


def summary(nodes, started: float, profile: str, extra: dict) -> dict:
    jobs = sacct_states()
    calcs = [c for node in nodes for c in node.called_descendants if isinstance(c, orm.CalcJobNode)]
    rows = [{'pk': c.pk, 'job_id': c.get_job_id(), 'exit_status': c.exit_status,
             'sacct': jobs.get(os.path.normpath(c.get_remote_workdir() or '?'), [])} for c in calcs]
    unterminated = [p.pk for node in nodes for p in [node, *node.called_descendants] if not p.is_terminated]
    return {'loops': [{'pk': n.pk, 'state': n.process_state.value, 'exit_status': n.exit_status} for n in nodes],
            'calcjobs': rows, 'unterminated': unterminated, 'wall_time_s': time.time() - started,
            'workers': extra.pop('workers', None), **extra}


def kill_scenario(profile: str) -> dict:
    verdi('daemon', 'start', '1')
    started = time.time()
    node = submit(loop_builder(0))

    def job_in_slurm():
        return any(isinstance(c, orm.CalcJobNode) and c.get_job_id() and not c.is_terminated
                   for c in node.called_descendants)

    wait_for(job_in_slurm, 900, 'a CalcJob of the loop to be in SLURM')
    in_flight = [c.pk for c in node.called_descendants if isinstance(c, orm.CalcJobNode) and not c.is_terminated]
    workers = daemon_pids(profile, 'worker')
    killed = process_tree(daemon_pids(profile))  # what a crash of the daemon's machine takes down
    for pid in killed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(5)
    survivors = [pid for pid in killed if os.path.exists(f'/proc/{pid}')]
    verdi('daemon', 'start', '1')  # the stale circus files of the killed daemon must not stop this
    try:
        wait_for(lambda: node.is_terminated, 1800, 'the loop to finish after the daemon was killed')
    finally:
        verdi('daemon', 'stop', check=False)
    return summary([node], started, profile, {'killed_pids': killed, 'worker_pids': workers, 'survivors': survivors,
                                              'in_flight_when_killed': in_flight, 'workers': len(workers)})


def loops_scenario(profile: str, count: int) -> dict:
    workers = int(os.environ.get('FERROMLIP_DAEMON_WORKERS', '2'))
    verdi('daemon', 'start', str(workers))
    started = time.time()
    nodes = [submit(loop_builder(seed)) for seed in range(count)]
    try:
        wait_for(lambda: all(n.is_terminated for n in nodes), 7200, f'{count} loops to finish')
    finally:
        verdi('daemon', 'stop', check=False)
    return summary(nodes, started, profile, {'workers': workers})


def main():
    profile, scenario = sys.argv[1], sys.argv[2]
    load_profile(profile)
    result = kill_scenario(profile) if scenario == 'kill' else loops_scenario(profile, int(sys.argv[3]))
    print(json.dumps(result))


if __name__ == '__main__':
    main()
