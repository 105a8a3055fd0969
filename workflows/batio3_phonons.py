"""Cubic BaTiO3 phonons with a potential against the reference labeller (minimalist paper, Fig. 3).

    verdi run workflows/batio3_phonons.py --potential PK [--supercell 2] [--engine reference|qe]

Prints the frequency RMSE and the unstable modes found by each, and stores the overlay plot (PNG node).
With `--engine qe` the reference forces are pw.x labels (the `moderate` QE protocol: slow on a laptop).
"""

import argparse

from aiida import orm

from aiida_ferromlip.codes import add_code_options, codes_from_arguments
from aiida_ferromlip.launch import run_get_node
from aiida_ferromlip.materials import batio3_polymorphs
from aiida_ferromlip.workflows.benchmarks.phonons import PhononBenchmarkWorkChain


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--potential', type=int, required=True, help='pk of a GapPotential or NequipPotential')
    parser.add_argument('--supercell', type=int, default=2)
    parser.add_argument('--engine', default='reference', choices=('reference', 'qe'))
    parser.add_argument('--save', default=None, help='also write the PNG here')
    add_code_options(parser, 'label', 'task', 'pw')
    args = parser.parse_args()
    codes = codes_from_arguments(parser, args, 'label', 'task', 'pw')

    code = codes['label' if args.engine == 'reference' else 'pw']
    builder = PhononBenchmarkWorkChain.get_builder_from_protocol(
        code, codes['task'], orm.load_node(args.potential), engine=args.engine,
        label_protocol='fast' if args.engine == 'reference' else 'moderate',
        overrides={'parameters': {'supercell': [args.supercell] * 3}},
        structure=orm.StructureData(ase=batio3_polymorphs(supercell=(1, 1, 1))['Pm-3m']))
    results, node = run_get_node(builder)
    print(f'\nPhononBenchmarkWorkChain<{node.pk}>: exit status {node.exit_status}')
    if not node.is_finished_ok:
        print(node.exit_message)
        return
    summary = results['summary'].get_dict()
    potential = builder.potential
    print(f'potential {potential.__class__.__name__}<{potential.pk}> vs reference `{args.engine}`, '
          f'{args.supercell}x{args.supercell}x{args.supercell} supercell, {summary["num_displacements"]} displacements')
    print(f'frequency RMSE along {"-".join(summary["path"])}: {summary["frequency_rmse_thz"]:.2f} THz')
    for name in ('reference', 'potential'):
        modes = summary[f'unstable_modes_{name}']
        print(f'unstable modes ({name:9s}): ' + ('; '.join(f'{q}: {v} THz' for q, v in modes.items()) or 'none'))
    print(f'missed instabilities: {summary["instabilities_missed"] or "none"}; spurious: '
          f'{summary["instabilities_spurious"] or "none"}')
    print(f'plot: SinglefileData<{results["plot"].pk}> (PNG)')
    if args.save:
        with open(args.save, 'wb') as handle:
            handle.write(results['plot'].get_content('rb'))


if __name__ == '__main__':
    main()
