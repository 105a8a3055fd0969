"""Refit a loop's own GAP fit with one change at a time and measure what the physics card measures (the parent EOS,
the unstable phonons at Γ, X, M, the three collective-Ti wells at SevenNet-0's lattice, the polymorphs relaxed in
their own symmetry: ``gap_presets_card.measure``). Which change to the `fast` loop's GAP would hold the card items
that its fits only just hold?

    verdi run benchmarks/refit_loop_fit.py FIT_PK [--variants as_is cut35 ...] [--path-frames 0 12 24]

``FIT_PK`` is a ``GapFitCalculation`` of a loop (e.g. its last fit). Each variant reruns that job — the same
TrainingSet, validation split and parameters, one of them changed (``VARIANTS``) — as a new ``GapFitCalculation``
(``get_builder_restart``). ``--path-frames N`` instead fits every frame of the TrainingSet plus N cubic cells at
SevenNet-0's a0 with every Ti moved 0-0.22 Å along [001], [011] or [111] (rattled 0.01 Å, labelled by SevenNet-0,
weighted as card frames): what more frames from a failing well item would add. Prints one line per fit.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from aiida import orm
from ase.io import write
from ase.stress import voigt_6_to_full_3x3_stress

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gap_presets_card import A0, DIRECTIONS, measure  # noqa: E402  (the card's quantities, measured the same way)

from aiida_ferromlip.calculations.gap_fit import gap_fit_frames  # noqa: E402
from aiida_ferromlip.engines.potentials import gap_calculator  # noqa: E402
from aiida_ferromlip.engines.reference import make_calculator  # noqa: E402
from aiida_ferromlip.launch import run_get_node
from aiida_ferromlip.materials import batio3_polymorphs  # noqa: E402
from aiida_ferromlip.materials.paths import random_path_frames, scaled_to_lattice  # noqa: E402


def variants(parameters: dict) -> dict:
    """Parameter changes, each applied alone to the fit's own parameters (one SOAP descriptor)."""
    soap = parameters['descriptors'][0]
    return {
        'as_is': {},
        'card_sigma_quarter': {'frame_sigma': {'card_': [0.00025, 0.0125, 0.025, 0.0]}},
        'sigma_e05': {'default_sigma': [0.0005, *parameters['default_sigma'][1:]]},
        'sparse50': {'descriptors': [{**soap, 'n_sparse': 50}]},
        'sparse200': {'descriptors': [{**soap, 'n_sparse': 200}]},
        'n8l6': {'descriptors': [{**soap, 'n_max': 8, 'l_max': 6}]},
        'as04': {'descriptors': [{**soap, 'atom_sigma': 0.4}]},
        'as03n8': {'descriptors': [{**soap, 'atom_sigma': 0.3, 'n_max': 8}]},
        'zeta2': {'descriptors': [{**soap, 'zeta': 2}]},
        'cut35': {'descriptors': [{**soap, 'cutoff': 3.5}]},
        'cut42': {'descriptors': [{**soap, 'cutoff': 4.2}], 'allow_large_cutoff': True},
    }


def with_path_frames(fit, count: int, workdir: str) -> str:
    """Fit every frame of ``fit``'s TrainingSet plus ``count`` labelled collective-Ti frames; the potential's path."""
    parameters = fit.inputs.parameters.get_dict()
    training_set = fit.inputs.training_set
    frames = gap_fit_frames(training_set, range(len(training_set)), parameters.get('frame_sigma'))
    if count:
        sevennet = make_calculator('7net-0')
        cubic = scaled_to_lattice(batio3_polymorphs(supercell=(1, 1, 1))['Pm-3m'], A0)
        for atoms in random_path_frames(cubic, 'Ti', DIRECTIONS, count, 0.22, rattle=0.01, seed=7):
            atoms.calc = sevennet
            energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
            atoms.calc = None
            atoms.info = {'REF_energy': float(energy), 'config_type': 'card_',
                          'REF_virial': (-voigt_6_to_full_3x3_stress(stress) * atoms.get_volume()).ravel()}
            atoms.arrays['REF_forces'] = forces
            frames.append(atoms)
    folder = os.path.join(workdir, f'path_{count}')
    os.makedirs(folder, exist_ok=True)
    write(os.path.join(folder, 'train.extxyz'), frames, format='extxyz')
    with open(os.path.join(folder, 'parameters.json'), 'w') as handle:
        json.dump({**parameters, 'validation_fraction': 0.0}, handle)
    subprocess.run(['ferromlip-gap'], cwd=folder, check=True, capture_output=True)
    return os.path.join(folder, 'gap.xml'), len(frames)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('fit', type=int, help='a GapFitCalculation of a loop')
    parser.add_argument('--variants', nargs='*', default=[])
    parser.add_argument('--path-frames', type=int, nargs='*', default=[])
    parser.add_argument('--workdir', default='/tmp/refit_loop_fit')
    args = parser.parse_args()
    fit = orm.load_node(args.fit)
    parameters = fit.inputs.parameters.get_dict()
    known = variants(parameters)
    unknown = sorted(set(args.variants) - set(known))
    if unknown:
        parser.error(f'unknown variant(s) {unknown}; known: {sorted(known)}')
    for name in args.variants:
        builder = fit.get_builder_restart()
        builder.parameters = orm.Dict({**parameters, **known[name]})
        start = time.perf_counter()
        results, node = run_get_node(builder)
        print(f'{name} (fit {time.perf_counter() - start:.0f} s, GapFitCalculation<{node.pk}>):',
              json.dumps(measure(results['potential'].calculator())), flush=True)
    for count in args.path_frames:
        start = time.perf_counter()
        path, frames = with_path_frames(fit, count, args.workdir)
        print(f'+{count} path frames ({frames} frames, fit {time.perf_counter() - start:.0f} s):',
              json.dumps(measure(gap_calculator(path))), flush=True)


if __name__ == '__main__':
    main()
