"""Polymorph ranking (minimalist paper, Tables I-II): a material's polymorphs relaxed in their space groups with a potential
and with a reference (SevenNet-0 by default, pw.x with --qe); energies relative to one phase, lattice parameters.

    verdi run workflows/polymorph_ranking.py --potential PK [--material BaTiO3|BiFeO3|PbZrO3|HfO2] [--qe]
                                             [--fixed-cell] [--phases R3m Pm-3m ...] [--save ranking.png]

With --qe and the default `fast` label protocol (30/240 Ry) cell relaxations are refused (Pulay stress): add
--fixed-cell, or --label-protocol moderate for the family's cutoffs (hours for the perovskites on a laptop).
"""

import argparse

from aiida import orm

from aiida_ferromlip.codes import add_code_options, codes_from_arguments
from aiida_ferromlip.launch import run_get_node
from aiida_ferromlip.materials import MATERIALS, RANKING_ZERO, polymorphs
from aiida_ferromlip.workflows.benchmarks.polymorphs import PolymorphRankingWorkChain


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--potential', type=int, required=True)
    parser.add_argument('--material', default='BaTiO3', choices=sorted(MATERIALS))
    parser.add_argument('--phases', nargs='*', default=None, help='a subset of the material\'s ranking phases')
    parser.add_argument('--qe', action='store_true', help='pw.x vc-relax as the reference (label protocol `fast`)')
    parser.add_argument('--label-protocol', default='fast')
    parser.add_argument('--fixed-cell', action='store_true', help='relax positions only, both sides')
    parser.add_argument('--save', default=None)
    add_code_options(parser, 'task', 'pw')
    args = parser.parse_args()
    codes = codes_from_arguments(parser, args, 'task', 'pw')
    structures = polymorphs(args.material, 'ranking')
    if args.phases:
        structures = {phase: structures[phase] for phase in args.phases}
    zero = RANKING_ZERO[args.material] if RANKING_ZERO[args.material] in structures else None
    builder = PolymorphRankingWorkChain.get_builder_from_protocol(
        codes['task'], orm.load_node(args.potential), structures, qe_code=codes['pw'] if args.qe else None,
        label_protocol=args.label_protocol, overrides={'parameters': {'reference_phase': zero, 'relax_cell': not args.fixed_cell}})
    results, node = run_get_node(builder)
    if not node.is_finished_ok:
        raise SystemExit(f'PolymorphRankingWorkChain<{node.pk}> failed: {node.exit_message}')
    table = results['table'].get_dict()
    print(f'\nPolymorphRankingWorkChain<{node.pk}> with {builder.potential.__class__.__name__}<{args.potential}>, '
          f'reference {"pw.x" if args.qe else node.inputs.reference_model.value}\n')
    print(table['markdown'])
    print(f'\norder (reference): {" < ".join(table["order_reference"])}')
    print(f'order (potential): {" < ".join(table["order_potential"])}')
    print(f'not converged: {table["not_converged"] or "none"}')
    if args.save:
        with open(args.save, 'wb') as handle:
            handle.write(results['plot'].get_content('rb'))


if __name__ == '__main__':
    main()
