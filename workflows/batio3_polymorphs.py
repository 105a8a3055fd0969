"""BaTiO3 polymorph ranking (seed 000 Tables I-II): R3m, Amm2, P4mm and Pm-3m relaxed in their space groups with a
potential and with the reference model; energies relative to the cubic phase, lattice parameters.

    verdi run workflows/batio3_polymorphs.py --potential PK [--save ranking.png]
"""

import argparse

from aiida import orm
from aiida.engine import run_get_node

from aiida_ferromlip.materials import batio3_polymorphs
from aiida_ferromlip.workflows.benchmarks.polymorphs import PolymorphRankingWorkChain


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--potential', type=int, required=True)
    parser.add_argument('--save', default=None)
    args = parser.parse_args()
    builder = PolymorphRankingWorkChain.get_builder()
    builder.potential = orm.load_node(args.potential)
    builder.structures = {phase.replace('-', '_'): orm.StructureData(ase=atoms)
                          for phase, atoms in batio3_polymorphs(supercell=(1, 1, 1)).items()}
    builder.parameters = orm.Dict({'reference_phase': 'Pm_3m'})
    results, node = run_get_node(builder)
    table = results['table'].get_dict()
    print(f'\nPolymorphRankingWorkChain<{node.pk}> with {builder.potential.__class__.__name__}<{args.potential}>\n')
    print(table['markdown'])
    print(f'\norder (reference): {" < ".join(table["order_reference"])}')
    print(f'order (potential): {" < ".join(table["order_potential"])}')
    print(f'not converged: {table["not_converged"] or "none"}')
    if args.save:
        with open(args.save, 'wb') as handle:
            handle.write(results['plot'].get_content('rb'))


if __name__ == '__main__':
    main()
