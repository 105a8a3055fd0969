"""Interpolation test (minimalist paper, Fig. 2): ramp MD (10 -> 300 K) with a potential from each BaTiO3 polymorph, 1 % of
the frames labelled by the reference, and the histograms of the potential's errors on them.

    verdi run workflows/batio3_interpolation.py --potential PK [--steps 5000] [--fraction 0.01] [--save errors.png]
"""

import argparse

from aiida import orm

from aiida_ferromlip.calculations.sample import SampleCalculation
from aiida_ferromlip.codes import add_code_options, codes_from_arguments
from aiida_ferromlip.launch import run_get_node
from aiida_ferromlip.materials import batio3_polymorphs
from aiida_ferromlip.workflows.benchmarks.interpolation import InterpolationBenchmarkWorkChain


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--potential', type=int, required=True)
    parser.add_argument('--steps', type=int, default=5000)
    parser.add_argument('--fraction', type=float, default=0.01)
    parser.add_argument('--save', default=None)
    add_code_options(parser, 'label', 'md', 'task')
    args = parser.parse_args()
    codes = codes_from_arguments(parser, args, 'label', 'md', 'task')
    potential = orm.load_node(args.potential)

    trajectories = {}
    for phase, atoms in batio3_polymorphs().items():
        builder = SampleCalculation.get_builder_from_protocol(
            codes['md'], potential, orm.StructureData(ase=atoms), protocol='minimalist_ramp',
            overrides={'parameters': {'steps': args.steps, 'stride': 10}})
        results, node = run_get_node(builder)
        if not node.is_finished_ok:
            print(f'{phase}: SampleCalculation<{node.pk}> failed: {node.exit_message}')
            continue
        for name, trajectory in results['trajectories'].items():
            trajectories[f'{phase.replace("-", "_")}_{name}'] = trajectory
    builder = InterpolationBenchmarkWorkChain.get_builder_from_protocol(
        codes['label'], codes['task'], potential,
        overrides={'parameters': {'fraction': args.fraction}},
        trajectories=trajectories)
    results, node = run_get_node(builder)
    metrics = results['metrics'].get_dict()
    print(f'\nInterpolationBenchmarkWorkChain<{node.pk}>: {metrics["num_frames"]} frames from '
          f'{len(trajectories)} ramp trajectories ({args.steps} steps each, every 10th stored)')
    print(f'energy RMSE {metrics["energy_per_fu_meV_rmse"]:.2f} meV/f.u. (MAE {metrics["energy_per_fu_meV_mae"]:.2f}), '
          f'forces RMSE {metrics["forces_meV_per_A_rmse"]:.0f} meV/Å (MAE {metrics["forces_meV_per_A_mae"]:.0f}), '
          f'stress RMSE {metrics["stress_kbar_rmse"]:.2f} kbar (MAE {metrics["stress_kbar_mae"]:.2f})')
    print(f'plot: SinglefileData<{results["plot"].pk}>')
    if args.save:
        with open(args.save, 'wb') as handle:
            handle.write(results['plot'].get_content('rb'))


if __name__ == '__main__':
    main()
