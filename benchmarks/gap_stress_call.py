"""Seconds per MD step of a GAP when ASE asks for energy, forces and then the stress (what i-PI's NST/NPT socket
clients do every step): quippy's plain ``Potential`` against ``engines.potentials.gap_calculator`` (stress among
quippy's default properties, so one evaluation gives all three), on 40- and 320-atom cubic BaTiO3 at 4.035 Å.

    verdi run benchmarks/gap_stress_call.py --potential PK

The best of three repeats of 10 (40 atoms) or 3 (320 atoms) steps, positions nudged each step. One thread per
process as the Makefile sets (``OMP_NUM_THREADS=1``).
"""

import argparse
import time

from aiida import orm
from quippy.potential import Potential

from aiida_ferromlip.data.potential import file_path
from aiida_ferromlip.engines.potentials import gap_calculator
from aiida_ferromlip.materials import batio3_polymorphs
from aiida_ferromlip.materials.paths import scaled_to_lattice


def seconds_per_step(calculator, atoms, steps: int, repeats: int = 3) -> float:
    """Best of ``repeats``: wall seconds per energy, forces, stress sequence on freshly nudged copies."""
    best = float('inf')
    for repeat in range(repeats):
        start = time.perf_counter()
        for step in range(steps):
            probe = atoms.copy()
            probe.positions[0, 0] += 1e-3 * (step + repeat * steps)
            probe.calc = calculator
            probe.get_potential_energy(), probe.get_forces(), probe.get_stress()
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--potential', type=int, required=True, help='pk of a GapPotential')
    args = parser.parse_args()
    path = file_path(orm.load_node(args.potential))
    unit = scaled_to_lattice(batio3_polymorphs(supercell=(1, 1, 1))['Pm-3m'], 4.035)
    print('| atoms | plain quippy (s/step) | gap_calculator (s/step) | ratio |')
    print('|---|---|---|---|')
    for size, steps in ((2, 10), (4, 3)):
        atoms = unit.repeat((size,) * 3)
        atoms.rattle(0.05, seed=1)
        plain = seconds_per_step(Potential(param_filename=path), atoms, steps)
        one_call = seconds_per_step(gap_calculator(path), atoms, steps)
        print(f'| {len(atoms)} | {plain:.3f} | {one_call:.3f} | {plain / one_call:.2f} |', flush=True)


if __name__ == '__main__':
    main()
