"""A material's ranking polymorphs relaxed in their space groups by the reference labeller's model alone: the
check that the shipped builders are the phases they are named after (minimalist paper, Tables I-II).

    verdi run workflows/reference_polymorphs.py [--material PbZrO3|HfO2|BiFeO3|BaTiO3] [--model 7net-0]
"""

import argparse

from aiida import orm

from aiida_ferromlip import materials

from aiida_ferromlip.calculations.atoms_task import AtomsTaskCalculation
from aiida_ferromlip.codes import add_code_options, codes_from_arguments
from aiida_ferromlip.launch import run_get_node
from aiida_ferromlip.workflows.benchmarks.polymorphs import relax_task, task_rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--material', default='PbZrO3', choices=sorted(materials.MATERIALS))
    parser.add_argument('--model', default='7net-0')
    parser.add_argument('--fmax', type=float, default=0.01)
    add_code_options(parser, 'task')
    args = parser.parse_args()
    codes = codes_from_arguments(parser, args, 'task')
    structures = {materials.port_name(name): orm.StructureData(ase=atoms)
                  for name, atoms in materials.polymorphs(args.material, 'ranking').items()}
    task = relax_task({'fmax': args.fmax, 'max_steps': 400, 'relax_cell': True, 'symprec': 1e-3})
    results, node = run_get_node(AtomsTaskCalculation, code=codes['task'], model=orm.Str(args.model),
                                 structures=structures, task=orm.Dict(task))
    if not node.is_finished_ok:
        raise SystemExit(f'AtomsTaskCalculation<{node.pk}> failed: {node.exit_message}')
    rows = task_rows(results['results'].get_dict())
    zero = materials.port_name(materials.RANKING_ZERO[args.material])
    print(f'AtomsTaskCalculation<{node.pk}> ({args.model}), {args.material}, energies relative to {zero}:')
    for name, row in rows.items():
        relative = 1000 * (row['energy_per_fu_eV'] - rows[zero]['energy_per_fu_eV'])
        print(f'{name:10s} {relative:+8.1f} meV/f.u.  a,b,c {", ".join(f"{x:.3f}" for x in row["cell_lengths"])}  '
              f'converged {row["converged"]} ({row["steps"]} steps)')


if __name__ == '__main__':
    main()
