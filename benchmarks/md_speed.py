"""MD speed of a potential: called directly from ASE in one process, and through the plugin's sampler (i-PI + socket
clients in a ``SampleCalculation``), on 40- and 320-atom cubic BaTiO3.

    verdi run benchmarks/md_speed.py --potential PK [--potential PK ...] [--steps 100] [--sizes 2 4] [--ensemble nst]

For each potential and cell (``--sizes``: n for an n x n x n supercell of the 5-atom cell): (a) steps per second of
ASE's Langevin MD with the potential's calculator in this process; (b) steps per second of a ``SampleCalculation``
with one replica and one client, from two runs of ``--steps`` and ``2 x --steps`` steps (the slope: i-PI start-up
and model loading cancel), its ratio to (a); and (c) the machine's CPU utilisation while two replicas run with two
clients. One thread per process (``OMP_NUM_THREADS=1``, as the Makefile sets): per core. ``--ensemble nst`` runs the
sampler under i-PI's barostat (the clients then compute the stress every step); the direct MD is NVT either way.
"""

import argparse
import time

import numpy as np
from aiida import orm

from aiida_ferromlip.analysis.profile import CpuSampler
from aiida_ferromlip.calculations.sample import SampleCalculation
from aiida_ferromlip.codes import add_code_options, codes_from_arguments
from aiida_ferromlip.launch import run_get_node
from aiida_ferromlip.materials import batio3_polymorphs
from aiida_ferromlip.materials.paths import scaled_to_lattice


def direct_rate(potential, atoms, steps: int) -> float:
    """Steps per second of Langevin MD at 300 K with the potential in this process (after 5 warm-up steps)."""
    from ase import units
    from ase.md.langevin import Langevin

    atoms = atoms.copy()
    atoms.calc = potential.calculator()
    dynamics = Langevin(atoms, 2 * units.fs, temperature_K=300, friction=0.01, rng=np.random.default_rng(0))
    dynamics.run(5)
    start = time.perf_counter()
    dynamics.run(steps)
    return steps / (time.perf_counter() - start)


def sampler_wall(code, potential, atoms, steps: int, temperatures, clients: int, ensemble: str = 'nvt'):
    """Wall time of the MD inside a SampleCalculation (the engine's own start to end), and the CPU samples."""
    builder = SampleCalculation.get_builder_from_protocol(
        code, potential, orm.StructureData(ase=atoms), protocol='fast',
        overrides={'parameters': {'temperatures': temperatures, 'exchange': False, 'steps': steps,
                                  'ensemble': ensemble,
                                  'stride': max(steps // 4, 1), 'num_clients': clients}})
    with CpuSampler() as sampler:
        _, node = run_get_node(builder)
    if not node.is_finished_ok:
        raise SystemExit(f'SampleCalculation<{node.pk}> failed: {node.exit_message}')
    statistics = node.outputs.statistics.get_dict()
    window = (statistics['started_at'], statistics['finished_at'])
    busy = [b for t, b in sampler.samples if window[0] <= t <= window[1]]
    return window[1] - window[0], (sum(busy) / len(busy) if busy else float('nan'))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--potential', type=int, action='append', required=True)
    parser.add_argument('--steps', type=int, default=100)
    parser.add_argument('--sizes', type=int, nargs='+', default=[2, 4])
    parser.add_argument('--ensemble', choices=('nvt', 'nst'), default='nvt', help='the sampler\'s ensemble')
    add_code_options(parser, 'md')
    args = parser.parse_args()
    codes = codes_from_arguments(parser, args, 'md')
    code = codes['md']
    unit = scaled_to_lattice(batio3_polymorphs(supercell=(1, 1, 1))['Pm-3m'], 4.035)
    print('| potential | atoms | direct (steps/s) | sampler, 1 replica (steps/s) | sampler / direct | '
          'CPU, 2 replicas + 2 clients |')
    print('|---|---|---|---|---|---|')
    for pk in args.potential:
        potential = orm.load_node(pk)
        name = f'{type(potential).__name__}<{pk}>'
        for size in args.sizes:
            atoms = unit.repeat((size, size, size))
            direct = direct_rate(potential, atoms, args.steps)
            short, _ = sampler_wall(code, potential, atoms, args.steps, [300], 1, args.ensemble)
            long, _ = sampler_wall(code, potential, atoms, 2 * args.steps, [300], 1, args.ensemble)
            through = args.steps / (long - short) if long > short else float('nan')
            _, busy = sampler_wall(code, potential, atoms, args.steps, [300, 600], 2, args.ensemble)
            print(f'| {name} | {len(atoms)} | {direct:.1f} | {through:.1f} | {through / direct:.2f} | {busy:.0%} |',
                  flush=True)


if __name__ == '__main__':
    main()
