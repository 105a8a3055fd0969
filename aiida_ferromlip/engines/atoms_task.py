"""``ferromlip-task``: ASE tasks with any potential of the plugin, or the reference model, as a job.

What the benchmarks and the physics card need beyond labelling and MD, run where the job lands (a cluster node
under SLURM, not the daemon):

* ``energies`` — energy, forces and stress of every frame (energies along a path, EOS points, phonon
  displacements, predictions on a test set);
* ``relax`` — every frame relaxed, optionally keeping its space group (ASE's ``FixSymmetry``: without it a
  metastable polymorph such as Amm2 BaTiO3 slides into the ground state) and with the cell free
  (``FrechetCellFilter``), by BFGS to ``fmax``.

Inputs: ``structures.extxyz`` (each frame's ``frame_key`` in its info), ``task.json`` (``{"task": ..., settings}``),
``potential.json`` (+ the model's files, see ``engines.potentials``). Outputs: ``results.json`` (one row per frame,
failures with reasons, timings) and ``structures_out.extxyz`` (the final frames with their energy, forces, stress).
A frame that fails is reported with its reason; the others are still done. No AiiDA imports.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

STRUCTURES_FILE = 'structures.extxyz'
TASK_FILE = 'task.json'
RESULTS_FILE = 'results.json'
OUTPUT_FILE = 'structures_out.extxyz'

#: Every task and its settings with their defaults.
TASKS = {
    'energies': {},
    'relax': {'fmax': 0.01, 'max_steps': 400, 'relax_cell': True, 'keep_symmetry': True, 'symprec': 1e-3},
}


def task_settings(task: dict) -> dict:
    """The task's settings with defaults filled in.

    :raises ValueError: for an unknown task or setting."""
    name = task.get('task')
    if name not in TASKS:
        raise ValueError(f'unknown task `{name}`; known: {", ".join(TASKS)}')
    given = {k: v for k, v in task.items() if k != 'task'}
    unknown = set(given) - set(TASKS[name])
    if unknown:
        raise ValueError(f'unknown settings {sorted(unknown)} of task `{name}`; known: {sorted(TASKS[name])}')
    return {**TASKS[name], **given}


def single_point(atoms, calculator) -> dict:
    """Energy (eV), forces (eV/Å) and stress (Voigt, eV/Å³; absent when the calculator gives none)."""
    atoms.calc = calculator
    results = {'energy': float(atoms.get_potential_energy()), 'forces': np.array(atoms.get_forces(), dtype=float)}
    try:
        results['stress'] = np.array(atoms.get_stress(voigt=True), dtype=float)
    except Exception:  # a model without stress (some nequip configs): energies and forces still count
        pass
    if not (math.isfinite(results['energy']) and np.all(np.isfinite(results['forces']))):
        raise FloatingPointError('non-finite energy or forces')
    return results


def relax(atoms, calculator, fmax: float, max_steps: int, relax_cell: bool, keep_symmetry: bool,
          symprec: float) -> tuple[object, dict]:
    """``atoms`` relaxed by BFGS (a copy); its row: energy, cell lengths/angles, volume, convergence, steps."""
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    atoms = atoms.copy()
    atoms.calc = calculator
    if keep_symmetry:
        atoms.set_constraint(FixSymmetry(atoms, symprec=symprec))
    target = FrechetCellFilter(atoms) if relax_cell else atoms
    optimizer = BFGS(target, logfile=None)
    converged = bool(optimizer.run(fmax=fmax, steps=max_steps))
    atoms.set_constraint()
    return atoms, {'converged': converged, 'steps': int(optimizer.nsteps)}


def run_task(frames, calculator, task: dict) -> tuple[list, dict, dict, dict]:
    """``(output frames, rows, failures, timings)`` of ``task`` on ``frames``, keyed by frame key."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from aiida_ferromlip.materials.units import formula_units

    settings = task_settings(task)
    outputs, rows, failures, timings = [], {}, {}, {}
    for index, atoms in enumerate(frames):
        key = str(atoms.info.get('frame_key', index))
        start = time.perf_counter()
        try:
            row = {}
            if task['task'] == 'relax':
                atoms, row = relax(atoms, calculator, **settings)
            results = single_point(atoms, calculator)
        except Exception as exception:  # one frame's failure must not lose the others
            failures[key] = f'{type(exception).__name__}: {exception}'
            continue
        finally:
            timings[key] = time.perf_counter() - start
        row.update({'energy_eV': results['energy'], 'num_atoms': len(atoms), 'formula_units': formula_units(atoms),
                    'cell_lengths': [float(x) for x in atoms.cell.cellpar()[:3]],
                    'cell_angles': [float(x) for x in atoms.cell.cellpar()[3:]],
                    'volume': float(atoms.get_volume()),
                    'max_force': float(np.abs(results['forces']).max()) if len(atoms) else 0.0})
        if task['task'] == 'relax':  # the relaxed structure itself, for whoever reuses the results later
            row['structure'] = {'numbers': atoms.numbers.tolist(), 'cell': atoms.cell.array.tolist(),
                                'positions': atoms.positions.tolist()}
        rows[key] = row
        atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info['frame_key'] = key
        outputs.append(atoms)
    return outputs, rows, failures, timings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='ferromlip-task', description=__doc__.splitlines()[0])
    parser.add_argument('--structures', default=STRUCTURES_FILE)
    parser.add_argument('--task', default=TASK_FILE)
    parser.add_argument('--potential', default='potential.json')
    args = parser.parse_args(argv)

    from ase.io import read, write

    from aiida_ferromlip.engines.potentials import calculator_from_spec

    started = time.time()
    with open(args.task) as handle:
        task = json.load(handle)
    report = {'task': task.get('task'), 'started_at': started}
    try:
        task_settings(task)
        frames = read(args.structures, index=':', format='extxyz')
        start = time.perf_counter()
        calculator = calculator_from_spec(args.potential)
        report['model_load_time_s'] = time.perf_counter() - start
        outputs, rows, failures, timings = run_task(frames, calculator, task)
    except Exception as exception:  # the parser turns this into an exit code with the reason
        report['error'] = f'{type(exception).__name__}: {exception}'
        with open(RESULTS_FILE, 'w') as handle:
            json.dump(report, handle, indent=1)
        print(report['error'], file=sys.stderr)
        return 1
    write(OUTPUT_FILE, outputs, format='extxyz')
    report.update({'rows': rows, 'failures': failures, 'wall_time_per_frame_s': timings, 'num_input': len(frames),
                   'finished_at': time.time()})
    with open(RESULTS_FILE, 'w') as handle:
        json.dump(report, handle, indent=1)
    print(f'{task["task"]}: {len(rows)}/{len(frames)} frames done', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
