"""Refit one TrainingSet (e.g. a loop's final one) with GAP variants and measure what the physics card measures:
unstable phonons at Γ, X, M and the three collective-Ti wells at SevenNet-0's lattice (and the parent EOS and
relaxed polymorphs), without AiiDA jobs. Prints one line per variant with its fit time.

    python benchmarks/refit_card_quantities.py TRAINING_SET_PK [--variants balanced:100 balanced:200 balanced:100:card]
    python benchmarks/refit_card_quantities.py TRAINING_SET_PK --variants balanced:100:card balanced:100:card:r3.5

A variant is PRESET:SPARSE[:card][:rCUTOFF]: ``fast`` (SOAP 3.8 Å n4 l3) or ``balanced`` (n6 l4), that many sparse
points, with ``card`` the frames of failing card items (frame keys containing ``card_``) fitted at half the sigmas
(0.5 meV, 25 meV/Å), as the fast loop does, and with ``rCUTOFF`` another SOAP cutoff (Å) than 3.8. Or PRESET[:card]
with any other preset of ``gap_presets_card.PRESETS`` (``batio3_gap``: gap.yaml's, both SOAP kernels and the 2-body
term), its descriptors and sigmas as they are:

    python benchmarks/refit_card_quantities.py TRAINING_SET_PK --variants batio3_gap batio3_gap:card

Every frame is fitted (no validation split). Prints the card's quantities: EOS, unstable phonons, wells, relaxed
polymorphs.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from aiida import load_profile, orm
from ase.io import write

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gap_presets_card import PRESETS, SOAP, measure  # noqa: E402  (the card's quantities, measured the same way)

from aiida_ferromlip.calculations.gap_fit import gap_fit_frames  # noqa: E402

CARD_SIGMA = {'card_': [0.0005, 0.025, 0.05, 0.0]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('training_set', type=int)
    parser.add_argument('--variants', nargs='+', default=['balanced:100', 'balanced:200', 'balanced:100:card'])
    parser.add_argument('--workdir', default='/tmp/refit_card_quantities')
    args = parser.parse_args()
    from quippy.potential import Potential

    load_profile()
    training_set = orm.load_node(args.training_set)
    common = {'e0_method': 'average', 'validation_fraction': 0.0, 'seed': 0, 'max_memory_gb': 8,
              'virial_fraction': 'auto', 'clip_sparse': True}
    for variant in args.variants:
        preset, *flags = variant.split(':')
        frame_sigma = CARD_SIGMA if 'card' in flags else None
        if preset in ('fast', 'balanced'):
            n_max, l_max = {'fast': (4, 3), 'balanced': (6, 4)}[preset]
            sparse = int(flags.pop(0))
            cutoff = next((float(flag[1:]) for flag in flags if flag.startswith('r')), 3.8)
            parameters = {**common, 'multi_species': False, 'allow_large_cutoff': False,
                          'default_sigma': [0.001, 0.05, 0.05, 0.0],
                          'descriptors': [{**SOAP, 'cutoff': cutoff, 'n_max': n_max, 'l_max': l_max, 'n_sparse': sparse}]}
        elif preset in PRESETS:
            parameters = {**common, 'multi_species': False, 'allow_large_cutoff': False, **PRESETS[preset]}
        else:
            parser.error(f'unknown preset `{preset}`: fast, balanced or one of {", ".join(sorted(PRESETS))}')
        if frame_sigma:
            parameters['frame_sigma'] = frame_sigma
        folder = os.path.join(args.workdir, variant.replace(':', '_'))
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        write(os.path.join(folder, 'train.extxyz'), gap_fit_frames(training_set, range(len(training_set)), frame_sigma),
              format='extxyz')
        with open(os.path.join(folder, 'parameters.json'), 'w') as handle:
            json.dump(parameters, handle)
        start = time.perf_counter()
        subprocess.run(['ferromlip-gap'], cwd=folder, check=True, capture_output=True)
        result = measure(Potential(param_filename=os.path.join(folder, 'gap.xml')))
        print(f'{variant} (fit {time.perf_counter() - start:.0f} s):', json.dumps(result), flush=True)


if __name__ == '__main__':
    main()
