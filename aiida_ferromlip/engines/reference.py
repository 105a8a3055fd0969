"""The reference labeller: a universal interatomic potential whose weights ship inside its wheel.

``ferromlip-label`` is the executable behind ``ReferenceLabelCalculation``. It reads frames from an extxyz file,
labels each with SevenNet (``sevenn``; SevenNet-0 reproduces BaTiO3's Ti off-centring, measured here), and
writes the labelled frames plus a JSON report with per-frame failures, timings and the labeller's identity.
A frame that cannot be labelled is listed with its reason; it never silently disappears.

This module must not import AiiDA: it runs on the computer where the job lands.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from functools import lru_cache

import numpy as np

from aiida_ferromlip.engines import exit_now, process_started_at

#: Models whose checkpoints ship inside the sevenn 0.13 wheel. Others (7net-omat, 7net-omni...) are downloaded
#: at run time by sevenn, which cannot work offline, so they are refused up front.
KNOWN_MODELS = ('7net-0', '7net-0_11july2024', '7net-0_22may2024', '7net-l3i5', '7net-mf-0')


def checkpoint_path(model: str) -> str:
    """Path of the checkpoint shipped in the sevenn wheel for ``model``.

    :raises ValueError: for a model name sevenn does not ship.
    """
    import os

    from sevenn.util import pretrained_name_to_path

    if model.lower() not in KNOWN_MODELS:
        raise ValueError(f'unknown reference model `{model}`; models shipped offline: {", ".join(KNOWN_MODELS)}')
    path = pretrained_name_to_path(model)
    if not os.path.isfile(path):
        raise ValueError(f'the checkpoint of `{model}` is missing from the sevenn installation: {path}')
    return path


@lru_cache(maxsize=None)
def supported_species(model: str = '7net-0') -> frozenset[str]:
    """Chemical species the model was trained on, read from its checkpoint's configuration (no model build)."""
    import torch

    checkpoint = torch.load(checkpoint_path(model), map_location='cpu', weights_only=False)
    return frozenset(checkpoint['config']['chemical_species'])


def make_calculator(model: str = '7net-0', modal: str | None = None):
    """ASE calculator for the reference model on the CPU."""
    import warnings

    from sevenn.calculator import SevenNetCalculator

    checkpoint_path(model)  # clear error for unknown names
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "no tensor-product accelerator": expected on CPU
        return SevenNetCalculator(model, device='cpu', modal=modal) if modal else SevenNetCalculator(model, device='cpu')


def label_frames(frames, calculator, max_force: float = 1e3):
    """Label ``frames`` in place; return ``(labelled, failures, timings)``.

    A frame fails when the calculator raises or returns non-finite / absurd (> ``max_force`` eV/Å) values.
    """
    from ase.calculators.singlepoint import SinglePointCalculator

    labelled, failures, timings = [], {}, {}
    for atoms in frames:
        key = str(atoms.info.get('frame_key', len(labelled) + len(failures)))
        start = time.perf_counter()
        try:
            atoms.calc = calculator
            energy = float(atoms.get_potential_energy())
            forces = np.array(atoms.get_forces(), dtype=float)
            stress = np.array(atoms.get_stress(voigt=True), dtype=float)
        except Exception as exception:  # any failure of one frame must not lose the others
            failures[key] = f'{type(exception).__name__}: {exception}'
            continue
        finally:
            timings[key] = time.perf_counter() - start
        if not (math.isfinite(energy) and np.all(np.isfinite(forces)) and np.all(np.isfinite(stress))):
            failures[key] = 'non-finite energy, forces or stress'
            continue
        if np.abs(forces).max() > max_force:
            failures[key] = f'force component of {np.abs(forces).max():.3g} eV/Å exceeds {max_force} eV/Å'
            continue
        atoms.calc = SinglePointCalculator(atoms, energy=energy, free_energy=energy, forces=forces, stress=stress)
        labelled.append(atoms)
    return labelled, failures, timings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='ferromlip-label', description=__doc__.splitlines()[0])
    parser.add_argument('--input', default='frames.extxyz')
    parser.add_argument('--output', default='labelled.extxyz')
    parser.add_argument('--report', default='report.json')
    parser.add_argument('--model', default='7net-0')
    parser.add_argument('--modal', default=None)
    parser.add_argument('--max-force', type=float, default=1e3)
    args = parser.parse_args(argv)

    from ase.io import read, write

    import sevenn

    started_at = process_started_at()
    frames = read(args.input, index=':', format='extxyz')
    start = time.perf_counter()
    calculator = make_calculator(args.model, args.modal)
    load_time = time.perf_counter() - start
    labelled, failures, timings = label_frames(frames, calculator, args.max_force)
    write(args.output, labelled, format='extxyz')
    report = {
        'labeller': f'sevennet:{args.model}',
        'model': args.model,
        'modal': args.modal,
        'sevenn_version': sevenn.__version__,
        'checkpoint': checkpoint_path(args.model),
        'num_input': len(frames),
        'num_labelled': len(labelled),
        'failures': failures,
        'wall_time_per_frame_s': timings,
        'model_load_time_s': load_time,
        'started_at': started_at,
        'finished_at': time.time(),
    }
    with open(args.report, 'w') as handle:
        json.dump(report, handle, indent=1)
    print(f'labelled {len(labelled)}/{len(frames)} frames with {report["labeller"]}', flush=True)
    return 0


def cli() -> None:
    """The console script: ``main``, then an immediate exit (``engines.exit_now``)."""
    exit_now(main)


if __name__ == '__main__':
    cli()
