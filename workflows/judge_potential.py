"""The physics card of a potential against its labeller (EOS, polymorphs, double wells, soft modes, an independent
test set, MD stability), printed as a table; the PNG and Markdown are nodes.

    verdi run workflows/judge_potential.py --potential PK [--labeller reference|qe] [--protocol fast|batio3_gap]
                                           [--reference-values PK --test-set PK]
    verdi run workflows/judge_potential.py             # the labeller's side only (its EOS, wells, phonons)

Codes default to the profile's `<name>@localhost`; pass `--label-code`, `--task-code`, `--sample-code` to choose.
"""

import argparse

from aiida import orm
from aiida.engine import run_get_node

from aiida_ferromlip.workflows.physics_card import PhysicsCardWorkChain


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--potential', type=int, default=None)
    parser.add_argument('--material', default='BaTiO3')
    parser.add_argument('--labeller', choices=('reference', 'qe'), default='reference')
    parser.add_argument('--label-protocol', default='fast')
    parser.add_argument('--protocol', default='fast')
    parser.add_argument('--reference-values', type=int, default=None, help="An earlier card's labeller side.")
    parser.add_argument('--test-set', type=int, default=None, help="An earlier card's test set.")
    parser.add_argument('--label-code', default=None)
    parser.add_argument('--task-code', default='ferromlip-task@localhost')
    parser.add_argument('--sample-code', default='ferromlip-md@localhost')
    args = parser.parse_args()
    label_code = args.label_code or ('pw@localhost' if args.labeller == 'qe' else 'ferromlip-label@localhost')
    builder = PhysicsCardWorkChain.get_builder_from_protocol(
        orm.load_code(label_code), orm.load_code(args.task_code), orm.load_code(args.sample_code),
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
