"""``ferromlip-task``: ASE tasks with any potential of the plugin, or the reference model, as a job.

What the benchmarks and the physics card need beyond labelling and MD, run where the job lands (a cluster node
under SLURM, not the daemon):

* ``energies`` — energy, forces and stress of every frame (energies along a path, EOS points, phonon
  displacements, predictions on a test set); with a committee, each row also holds how much its members disagree
  (``max_force_deviation``, ``energy_deviation``); with ``uncertainty: gap_variance`` and a GAP, quippy's
  predictive standard deviation of the local energies (``max_local_energy_std``);
* ``relax`` — every frame relaxed, optionally keeping its space group (ASE's ``FixSymmetry``: without it a
  metastable polymorph such as Amm2 BaTiO3 slides into the ground state) and with the cell free
  (``FrechetCellFilter``), by BFGS (or FIRE) to ``fmax``;
* ``neb`` — the minimum-energy path between the frames keyed ``initial`` and ``final`` (same atoms, same cell):
  both end points relaxed at fixed cell, then ASE's climbing-image nudged elastic band (improved tangent, images
  started by IDPP interpolation, FIRE); the output frames are the band's images ``image_000`` ... in order.

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

from aiida_ferromlip.engines import exit_now, process_started_at

STRUCTURES_FILE = 'structures.extxyz'
TASK_FILE = 'task.json'
RESULTS_FILE = 'results.json'
OUTPUT_FILE = 'structures_out.extxyz'

#: Every task and its settings with their defaults.
TASKS = {
    # stress: false skips it (a GAP's stress costs about twice its energy and forces; a committee scoring sampled
    # frames needs forces only)
    # uncertainty: `gap_variance` also reports quippy's predictive std of a GAP (``GapVarianceCalculator``)
    'energies': {'stress': True, 'uncertainty': None},
    'relax': {'fmax': 0.01, 'max_steps': 400, 'relax_cell': True, 'keep_symmetry': True, 'symprec': 1e-3,
              'optimizer': 'BFGS'},
    'neb': {'images': 7, 'fmax': 0.05, 'max_steps': 400, 'endpoint_fmax': 0.02, 'climb': True, 'spring': 0.1},
}
#: The optimizers a relaxation may use (ASE's).
OPTIMIZERS = ('BFGS', 'FIRE')
#: The frame keys of a ``neb`` task's two end points.
NEB_ENDS = ('initial', 'final')


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
    settings = {**TASKS[name], **given}
    if settings.get('optimizer', 'BFGS') not in OPTIMIZERS:
        raise ValueError(f'unknown optimizer `{settings["optimizer"]}`; known: {", ".join(OPTIMIZERS)}')
    if settings.get('uncertainty') not in (None, 'gap_variance'):
        raise ValueError(f'unknown uncertainty `{settings["uncertainty"]}` of task `energies`; known: gap_variance')
    if name == 'neb' and settings['images'] < 1:
        raise ValueError(f'a band needs at least 1 intermediate image, got `images` {settings["images"]}')
    return settings


def neb_ends_problem(frames: dict) -> str | None:
    """Why ``frames`` (by key) cannot be a band's end points, or None."""
    if sorted(frames) != sorted(NEB_ENDS):
        return f'a band takes exactly the structures {" and ".join(NEB_ENDS)}, got {sorted(frames)}'
    initial, final = (frames[key] for key in NEB_ENDS)
    if initial.get_chemical_symbols() != final.get_chemical_symbols():
        return 'the end points must hold the same atoms in the same order'
    if not np.allclose(initial.cell.array, final.cell.array, atol=1e-6):
        return 'the end points must share one cell (the band is computed at fixed cell)'
    return None


def single_point(atoms, calculator, stress: bool = True) -> dict:
    """Energy (eV), forces (eV/Å) and stress (Voigt, eV/Å³; absent when the calculator gives none or
    ``stress`` is false)."""
    atoms.calc = calculator
    results = {'energy': float(atoms.get_potential_energy()), 'forces': np.array(atoms.get_forces(), dtype=float)}
    if stress:
        try:
            results['stress'] = np.array(atoms.get_stress(voigt=True), dtype=float)
        except Exception:  # a model without stress (some nequip configs): energies and forces still count
            pass
    if not (math.isfinite(results['energy']) and np.all(np.isfinite(results['forces']))):
        raise FloatingPointError('non-finite energy or forces')
    for name in getattr(calculator, 'deviation_properties', ()):  # a committee: how much its members disagree
        results[name] = float(calculator.results[name])
    return results


def relax(atoms, calculator, fmax: float, max_steps: int, relax_cell: bool, keep_symmetry: bool,
          symprec: float, optimizer: str = 'BFGS') -> tuple[object, dict]:
    """``atoms`` relaxed (a copy); its row: convergence and steps."""
    from ase import optimize
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter

    atoms = atoms.copy()
    atoms.calc = calculator
    if keep_symmetry:
        atoms.set_constraint(FixSymmetry(atoms, symprec=symprec))
    target = FrechetCellFilter(atoms) if relax_cell else atoms
    optimizer = getattr(optimize, optimizer)(target, logfile=None)
    converged = bool(optimizer.run(fmax=fmax, steps=max_steps))
    atoms.set_constraint()
    return atoms, {'converged': converged, 'steps': int(optimizer.nsteps)}


def band(initial, final, calculator, images: int, fmax: float, max_steps: int, endpoint_fmax: float,
         climb: bool, spring: float) -> tuple[list, dict]:
    """The climbing-image NEB between ``initial`` and ``final`` (end points relaxed first, fixed cell):
    ``(images, summary)``."""
    from ase.mep import NEB
    from ase.optimize import FIRE

    ends, summary = [], {}
    for name, atoms in zip(NEB_ENDS, (initial, final)):
        atoms, row = relax(atoms, calculator, fmax=endpoint_fmax, max_steps=max_steps, relax_cell=False,
                           keep_symmetry=False, symprec=0.0)
        summary[f'{name}_converged'], summary[f'{name}_steps'] = row['converged'], row['steps']
        ends.append(atoms)
    path = [ends[0]] + [ends[0].copy() for _ in range(images)] + [ends[1]]
    for image in path:
        image.calc = calculator
    neb = NEB(path, k=spring, climb=climb, method='improvedtangent', allow_shared_calculator=True)
    neb.interpolate('idpp', mic=True)
    optimizer = FIRE(neb, logfile=None)
    summary['converged'] = bool(optimizer.run(fmax=fmax, steps=max_steps))
    summary['steps'] = int(optimizer.nsteps)
    for index, image in enumerate(path):
        image.info['frame_key'] = f'image_{index:03d}'
    return path, summary


def run_task(frames, calculator, task: dict) -> tuple[list, dict, dict, dict, dict]:
    """``(output frames, rows, failures, timings, summary)`` of ``task`` on ``frames``; rows, failures and timings
    keyed by frame key (for ``neb``: by image, and the band's convergence in ``summary``)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from aiida_ferromlip.materials.units import formula_units

    settings = task_settings(task)
    outputs, rows, failures, timings, summary = [], {}, {}, {}, {}
    if task['task'] == 'neb':
        ends = {str(atoms.info.get('frame_key', index)): atoms for index, atoms in enumerate(frames)}
        problem = neb_ends_problem(ends)
        if problem:
            raise ValueError(problem)
        start = time.perf_counter()
        frames, summary = band(ends['initial'], ends['final'], calculator, **settings)
        summary['wall_time_s'] = time.perf_counter() - start
    for index, atoms in enumerate(frames):
        key = str(atoms.info.get('frame_key', index))
        start = time.perf_counter()
        try:
            row = {}
            if task['task'] == 'relax':
                atoms, row = relax(atoms, calculator, **settings)
            results = single_point(atoms, calculator, stress=settings.get('stress', True))
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
        row.update({name: results.pop(name) for name in getattr(calculator, 'deviation_properties', ())})
        if task['task'] == 'relax':  # the relaxed structure itself, for whoever reuses the results later
            row['structure'] = {'numbers': atoms.numbers.tolist(), 'cell': atoms.cell.array.tolist(),
                                'positions': atoms.positions.tolist()}
        rows[key] = row
        atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info['frame_key'] = key
        outputs.append(atoms)
    return outputs, rows, failures, timings, summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='ferromlip-task', description=__doc__.splitlines()[0])
    parser.add_argument('--structures', default=STRUCTURES_FILE)
    parser.add_argument('--task', default=TASK_FILE)
    parser.add_argument('--potential', default='potential.json')
    args = parser.parse_args(argv)

    from ase.io import read, write

    from aiida_ferromlip.engines.potentials import calculator_from_spec

    started = process_started_at()
    with open(args.task) as handle:
        task = json.load(handle)
    report = {'task': task.get('task'), 'started_at': started}
    try:
        settings = task_settings(task)
        frames = read(args.structures, index=':', format='extxyz')
        start = time.perf_counter()
        calculator = calculator_from_spec(args.potential, gap_variance=settings.get('uncertainty') == 'gap_variance')
        report['model_load_time_s'] = time.perf_counter() - start
        outputs, rows, failures, timings, summary = run_task(frames, calculator, task)
    except Exception as exception:  # the parser turns this into an exit code with the reason
        report['error'] = f'{type(exception).__name__}: {exception}'
        with open(RESULTS_FILE, 'w') as handle:
            json.dump(report, handle, indent=1)
        print(report['error'], file=sys.stderr)
        return 1
    write(OUTPUT_FILE, outputs, format='extxyz')
    report.update({'rows': rows, 'failures': failures, 'wall_time_per_frame_s': timings, 'num_input': len(frames),
                   'summary': summary, 'finished_at': time.time()})
    with open(RESULTS_FILE, 'w') as handle:
        json.dump(report, handle, indent=1)
    print(f'{task["task"]}: {len(rows)}/{len(frames)} frames done', flush=True)
    return 0


def cli() -> None:
    """The console script: ``main``, then an immediate exit (``engines.exit_now``)."""
    exit_now(main)


if __name__ == '__main__':
    cli()
