"""CPU time of one energy + forces call (what NVT MD asks) and of energy + forces + stress (NST) of potentials on the
rattled 40-atom R3m BaTiO3 cell: interleaved between the potentials, best of ``--repeats``, measured as the calling
process's CPU time so that other load on the machine changes it little.

    verdi run benchmarks/gap_call_time.py POTENTIAL [POTENTIAL ...] [--repeats 8]

A POTENTIAL is a Potential node's pk (any model family: its own calculator) or a gap_fit ``gap.xml`` path (e.g. a
fit of ``benchmarks/refit_card_quantities.py``'s work folder). Also prints what the `batio3_gap` protocol's
paper-length REMD (48 000 calls: 6 temperatures x 4 polymorphs x 2000 steps) costs on two cores.
"""

import argparse
import time

from aiida import orm

from aiida_ferromlip.engines.potentials import gap_calculator
from aiida_ferromlip.materials import batio3_polymorphs

PAPER_CALLS = 6 * 4 * 2000


def calculator_of(spec: str):
    return gap_calculator(spec) if spec.endswith('.xml') else orm.load_node(int(spec)).calculator()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('potentials', nargs='+')
    parser.add_argument('--repeats', type=int, default=8)
    args = parser.parse_args()
    calculators = {spec: calculator_of(spec) for spec in args.potentials}
    cell = batio3_polymorphs()['R3m']
    best = {(spec, stress): float('inf') for spec in calculators for stress in (False, True)}
    for repeat in range(args.repeats):
        for spec, calculator in calculators.items():
            for stress in (False, True):
                atoms = cell.copy()
                atoms.rattle(0.01, seed=2 * repeat + stress)  # a new geometry each call: nothing cached
                atoms.calc = calculator
                start = time.process_time()
                atoms.get_potential_energy(), atoms.get_forces()
                if stress:
                    atoms.get_stress()
                best[(spec, stress)] = min(best[(spec, stress)], time.process_time() - start)
    print('| potential | E + F (ms per 40-atom call, CPU) | E + F + S | 48 000 calls on two cores (min) |')
    print('|---|---|---|---|')
    for spec in calculators:
        plain, with_stress = best[(spec, False)], best[(spec, True)]
        print(f'| {spec} | {1000 * plain:.0f} | {1000 * with_stress:.0f} | {PAPER_CALLS * plain / 2 / 60:.0f} |')


if __name__ == '__main__':
    main()
