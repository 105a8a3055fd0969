"""The physics card of a potential against its labeller (EOS, polymorphs, double wells, soft modes, an independent
test set, MD stability), printed as a table; the PNG and Markdown are nodes.

    verdi run workflows/judge_potential.py --potential PK [--labeller reference|qe] [--protocol fast|batio3_gap]
                                           [--reference-values PK --test-set PK]
    verdi run workflows/judge_potential.py             # the labeller's side only (its EOS, wells, phonons)

Codes default to the profile's own (`ferromlip setup codes`); pass `--label-code`, `--task-code`, `--md-code`,
`--pw-code` or `--computer` to choose.
"""

import argparse

from aiida import orm

from aiida_ferromlip.codes import add_code_options, codes_from_arguments
from aiida_ferromlip.launch import run_get_node
from aiida_ferromlip.workflows.benchmarks.physics_card import PhysicsCardWorkChain


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--potential', type=int, default=None)
    parser.add_argument('--material', default='BaTiO3')
    parser.add_argument('--labeller', choices=('reference', 'qe'), default='reference')
    parser.add_argument('--label-protocol', default='fast')
    parser.add_argument('--protocol', default='fast')
    parser.add_argument('--reference-values', type=int, default=None, help="An earlier card's labeller side.")
    parser.add_argument('--test-set', type=int, default=None, help="An earlier card's test set.")
    add_code_options(parser, 'label', 'task', 'md', 'pw')
    args = parser.parse_args()
    codes = codes_from_arguments(parser, args, 'label', 'task', 'md', 'pw')
    builder = PhysicsCardWorkChain.get_builder_from_protocol(
        codes['pw' if args.labeller == 'qe' else 'label'], codes['task'], codes['md'],
        potential=orm.load_node(args.potential) if args.potential else None, material=args.material,
        engine=args.labeller, label_protocol=args.label_protocol, protocol=args.protocol)
    if args.reference_values:
        builder.reference_values = orm.load_node(args.reference_values)
    if args.test_set:
        builder.test_set = orm.load_node(args.test_set)
    results, node = run_get_node(builder)
    print(f'\nPhysicsCardWorkChain<{node.pk}>: exit status {node.exit_status}')
    eos = results['reference_values']['eos'] if 'reference_values' in results else None
    if eos:
        print(f"labeller's parent: a0 = {eos['lattice']:.4f} Å, B = {eos['bulk_modulus_GPa']:.0f} GPa; "
              f"reference values Dict<{results['reference_values'].pk}>")
    if 'card' in results:
        print(results['card']['markdown'])
        print(f'\nPNG: SinglefileData<{results["plot"].pk}>; test set TrainingSet<{results["test_set"].pk}>')


if __name__ == '__main__':
    main()
