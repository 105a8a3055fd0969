"""Where an MD job's time goes: rerun a finished ``SampleCalculation``'s engine (i-PI + ASE socket clients) on a copy of
its inputs with 1, 2, 3 ... clients, the potential called directly for comparison, and (``--profile``) the clients
under cProfile: time in the potential, time waiting for i-PI, model load.

    verdi run benchmarks/md_job_profile.py --calculation PK [--clients 1 2 3] [--profile] [--calls 10]

Run it with nothing else on the machine (it measures wall times). One thread per process (``OMP_NUM_THREADS=1``).
The copy is made in a temporary folder from the job's remote folder (it must still exist); nothing is stored.
"""

import argparse
import glob
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from aiida import orm

from aiida_ferromlip.engines import md
from aiida_ferromlip.engines.potentials import SPEC_FILE, calculator_from_spec


def copy_inputs(node: orm.CalcJobNode, target: str) -> None:
    source = node.outputs.remote_folder.get_remote_path()
    with open(os.path.join(source, SPEC_FILE)) as handle:
        model_file = json.load(handle).get('file')
    names = [md.PARAMETERS_FILE, md.STRUCTURE_FILE, SPEC_FILE]
    paths = [os.path.join(source, name) for name in names]
    if model_file:
        paths += glob.glob(os.path.join(source, f'{model_file}*'))
    for path in paths:
        shutil.copy(path, target)


def direct_call_time(calls: int) -> float:
    """Median seconds of one energy + forces + stress call of the job's potential on its start structure (rattled
    0.01 Å before each call, so nothing is cached)."""
    from ase.io import read

    atoms = read(md.STRUCTURE_FILE)
    atoms.calc = calculator_from_spec(SPEC_FILE)
    atoms.get_potential_energy()  # first call: set-up
    times = []
    for seed in range(calls):
        atoms.rattle(0.01, seed=seed)
        start = time.perf_counter()
        atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run(clients: int, profile: bool) -> dict:
    """The engine's ``run_remd`` with ``clients`` socket clients (under cProfile with ``profile``)."""
    parameters = json.load(open(md.PARAMETERS_FILE))
    parameters['num_clients'] = clients
    real_popen = subprocess.Popen
    numbers = iter(range(clients))

    def popen(args, *rest, **kwargs):
        args = list(args)
        if profile and args[1:3] == ['-m', 'aiida_ferromlip.engines.md']:
            # the client under cProfile in its own process (the module's entry ends the process at once, before
            # `python -m cProfile` could write its file)
            address = args[args.index('--address') + 1]
            args = [sys.executable, '-c', 'import cProfile; from aiida_ferromlip.engines.md import client; '
                    f'cProfile.run("client({address!r})", "client{next(numbers)}.prof")']
        return real_popen(args, *rest, **kwargs)

    md.subprocess.Popen = popen
    try:
        start = time.perf_counter()
        md.run_remd(parameters, {})
        wall = time.perf_counter() - start
    finally:
        md.subprocess.Popen = real_popen
    steps = re.findall(r't/step:\s*([0-9.eE+-]+)', open(md.IPI_LOG).read())
    row = {'clients': clients, 'wall_s': wall, 'ipi_s_per_step': float(steps[-1]) if steps else float('nan')}
    if profile:
        stats = pstats.Stats('client0.prof').stats
        # the socket client's `calculate`: the potential's energy, forces (and stress) of one step, any potential
        row['potential_s'] = sum(v[3] for k, v in stats.items() if k[0].endswith('socketio.py') and k[2] == 'calculate')
        row['waiting_s'] = sum(v[2] for k, v in stats.items() if k[2] == "<method 'recv' of '_socket.socket' objects>")
        row['client_s'] = max(v[3] for v in stats.values())
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--calculation', type=int, required=True, help='a finished SampleCalculation (remd mode)')
    parser.add_argument('--clients', type=int, nargs='+', default=[1, 2, 3])
    parser.add_argument('--profile', action='store_true', help='cProfile the first client of each run')
    parser.add_argument('--calls', type=int, default=10, help='direct calls timed')
    args = parser.parse_args()
    node = orm.load_node(args.calculation)
    parameters = node.inputs.parameters.get_dict()
    if node.process_label != 'SampleCalculation' or parameters.get('mode') != 'remd':
        parser.error(f'{node.process_label}<{node.pk}> is not a SampleCalculation in remd mode')
    os.environ['OMP_NUM_THREADS'] = '1'
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as folder:
        copy_inputs(node, folder)
        os.chdir(folder)
        try:
            direct = direct_call_time(args.calls)
            rows = [run(clients, args.profile) for clients in args.clients]
        finally:
            os.chdir(here)
    replicas = len(parameters['temperatures'])
    print(f'SampleCalculation<{node.pk}>: {parameters.get("ensemble", "nvt")} MD, {replicas} replicas x '
          f'{parameters["steps"]} steps, {len(node.inputs.structure.sites)} atoms, '
          f'{node.inputs.potential.__class__.__name__}<{node.inputs.potential.pk}>')
    print(f'potential called directly (E+F+S): {direct:.3f} s per call')
    print('| clients | wall (s) | i-PI s/step (all replicas) | s per replica step | per core: direct / (cores x that) |'
          + (' client: potential / waiting / total (s) |' if args.profile else ''))
    print('|---|---|---|---|---|' + ('---|' if args.profile else ''))
    for row in rows:
        per_replica = row['ipi_s_per_step'] / replicas
        line = (f'| {row["clients"]} | {row["wall_s"]:.1f} | {row["ipi_s_per_step"]:.3f} | {per_replica:.3f} | '
                f'{direct / (min(row["clients"], replicas, os.cpu_count() or 1) * per_replica):.2f} |')
        if args.profile:
            line += f' {row["potential_s"]:.1f} / {row["waiting_s"]:.1f} / {row["client_s"]:.1f} |'
        print(line)


if __name__ == '__main__':
    main()
