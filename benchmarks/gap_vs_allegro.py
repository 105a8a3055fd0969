"""GAP and Allegro trained on the same TrainingSet (the minimalist paper's comparison): validation errors, training time and MD
speed (atom-steps per second) on a 320-atom BaTiO3 cell.

    verdi run benchmarks/gap_vs_allegro.py [--frames 48] [--gap-protocol fast] [--nequip-protocol fast]
                                          [--training-set PK] [--epochs N] [--md-steps 20] [--compile]

Without ``--training-set`` the frames are rattled/strained copies of the four BaTiO3 polymorphs (40-atom cells)
labelled by the reference labeller. Both models use the same train/validation split (same fraction and seed),
so their validation errors are on the same held-out frames.
"""

import argparse
import time

import numpy as np
from aiida import orm
from ase import units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet

from aiida_ferromlip.calculations.gap_fit import GapFitCalculation
from aiida_ferromlip.calculations.nequip_train import NequipTrainCalculation
from aiida_ferromlip.codes import add_code_options, codes_from_arguments
from aiida_ferromlip.launch import run_get_node
from aiida_ferromlip.materials import batio3_polymorphs, rattled_strained
from aiida_ferromlip.workflows.label.base import LabelWorkChain


def reference_training_set(num_frames: int, code):
    structures = {}
    per_phase = max(1, num_frames // 4)
    for index, (phase, atoms) in enumerate(batio3_polymorphs().items()):
        for j, frame in enumerate(rattled_strained(atoms, per_phase, rattle=0.06, strain=0.01, seed=index)):
            structures[f'{phase.replace("-", "_")}_{j:03d}'] = orm.StructureData(ase=frame)
    builder = LabelWorkChain.get_builder_from_protocol(code, structures,
                                                       protocol='fast')
    results, _ = run_get_node(builder)
    return results['training_set']


def md_speed(calculator, steps: int) -> float:
    """Atom-steps per second of NVE velocity Verlet on 320 atoms (4x4x4 cubic BaTiO3 at 300 K), after one warm-up."""
    atoms = batio3_polymorphs(supercell=(4, 4, 4))['Pm-3m']
    atoms.rattle(0.02, seed=1)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    atoms.calc = calculator
    dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    dynamics.run(1)  # first call: model set-up, neighbour-list build
    start = time.perf_counter()
    dynamics.run(steps)
    return len(atoms) * steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=48)
    parser.add_argument('--training-set', type=int, default=None)
    parser.add_argument('--gap-protocol', default='fast')
    parser.add_argument('--nequip-protocol', default='fast')
    parser.add_argument('--epochs', type=int, default=None, help='override the Allegro protocol\'s max_epochs')
    parser.add_argument('--md-steps', type=int, default=20)
    parser.add_argument('--compile', action='store_true', help='also compile Allegro (AOTInductor) and time it')
    add_code_options(parser, 'label', 'gap', 'nequip')
    args = parser.parse_args()
    codes = codes_from_arguments(parser, args, 'label', 'gap', 'nequip')

    start = time.perf_counter()
    training_set = orm.load_node(args.training_set) if args.training_set else reference_training_set(args.frames, codes['label'])
    print(f'TrainingSet<{training_set.pk}>: {len(training_set)} frames ({time.perf_counter() - start:.0f} s)')

    gap_builder = GapFitCalculation.get_builder_from_protocol(
        codes['gap'], training_set, protocol=args.gap_protocol,
        overrides={'parameters': {'clip_sparse': True}})
    nequip_builder = NequipTrainCalculation.get_builder_from_protocol(
        codes['nequip'], training_set, protocol=args.nequip_protocol,
        overrides={'parameters': {'compile': 'aotinductor' if args.compile else 'none',
                                  'validation_fraction': gap_builder.parameters['validation_fraction'],
                                  'seed': gap_builder.parameters['seed']},
                   **({'training': {'max_epochs': args.epochs}} if args.epochs else {})})
    rows = []
    for name, builder, time_key in (('GAP', gap_builder, 'fit_wall_time_s'),
                                    ('Allegro', nequip_builder, 'train_wall_time_s')):
        results, node = run_get_node(builder)
        if not node.is_finished_ok:
            print(f'{name}: {node.process_label}<{node.pk}> failed: [{node.exit_status}] {node.exit_message}')
            continue
        potential, metrics = results['potential'], results['metrics'].get_dict()
        speeds = {'eager': md_speed(potential.calculator(), args.md_steps)}
        if name == 'Allegro' and args.compile:
            speeds['compiled'] = md_speed(potential.calculator(compiled=True), args.md_steps)
        rows.append((name, node.pk, potential.base.attributes.get(time_key), metrics, speeds))

    print('\n model     job   train time (s)  E RMSE (meV/f.u.)  F RMSE (meV/Å)  S RMSE (kbar)  MD (atom-steps/s, 320 atoms)')
    for name, pk, seconds, metrics, speeds in rows:
        speed_text = ', '.join(f'{k} {v:.0f}' for k, v in speeds.items())
        print(f' {name:8s} {pk:5d} {seconds or float("nan"):15.0f} {metrics["energy_per_fu_meV_rmse"]:18.2f}'
              f' {metrics["forces_meV_per_A_rmse"]:15.0f} {metrics["stress_kbar_rmse"]:14.2f}  {speed_text}')
    print(f'\nvalidation frames: {rows[0][3]["num_frames"] if rows else 0} (same split for both); '
          f'protocols: GAP `{args.gap_protocol}`, Allegro `{args.nequip_protocol}`; wall {time.perf_counter() - start:.0f} s')


if __name__ == '__main__':
    main()
