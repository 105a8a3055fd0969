"""Switching path (minimalist paper, Fig. 5): climbing-image NEB between two R3c (BiFeO3) or R3m (BaTiO3) variants with
P_z (and R_z) reversed, with a potential; the reference labeller's energies on the same images.

    verdi run workflows/switching_path.py --potential PK [--material BiFeO3|BaTiO3] [--images 7] [--save path.png]
"""

import argparse

from aiida import orm

from aiida_ferromlip.codes import add_code_options, codes_from_arguments
from aiida_ferromlip.launch import run_get_node
from aiida_ferromlip.materials import switching_endpoints
from aiida_ferromlip.workflows.benchmarks.switching import SwitchingPathWorkChain

#: End points per material: BiFeO3's R3c (rotations + [111] shifts), BaTiO3's R3m (Ti shifts only, no rotations).
ENDPOINTS = {'BiFeO3': {'a_site': 'Bi', 'b_site': 'Fe'},
             'BaTiO3': {'a_site': 'Ba', 'b_site': 'Ti', 'lattice': 4.0, 'tilt': 0, 'a_shift': 0.0, 'b_shift': 0.1}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--potential', type=int, required=True)
    parser.add_argument('--material', default='BiFeO3', choices=sorted(ENDPOINTS))
    parser.add_argument('--images', type=int, default=7)
    parser.add_argument('--save', default=None)
    add_code_options(parser, 'label', 'task')
    args = parser.parse_args()
    codes = codes_from_arguments(parser, args, 'label', 'task')
    initial, final = switching_endpoints(**ENDPOINTS[args.material])
    builder = SwitchingPathWorkChain.get_builder_from_protocol(
        codes['label'], codes['task'],
        orm.load_node(args.potential), overrides={'parameters': {'images': args.images}},
        initial=orm.StructureData(ase=initial), final=orm.StructureData(ase=final))
    results, node = run_get_node(builder)
    if not node.is_finished_ok:
        raise SystemExit(f'SwitchingPathWorkChain<{node.pk}> failed: {node.exit_message}')
    summary = results['summary'].get_dict()
    profile = results['profile']
    print(f'\nSwitchingPathWorkChain<{node.pk}> ({args.material}, potential {args.potential}): NEB '
          f'{"converged" if summary["converged"] else "NOT converged"} in {summary["neb_steps"]} steps; '
          f'P from {summary["charges"]}')
    print(' image  E (meV/f.u.)   P_x    P_y    P_z (C/m^2)   R_x    R_y    R_z (deg)')
    energies = profile.get_array('energy_meV_per_fu')
    for index, (energy, p, r) in enumerate(zip(energies, profile.get_array('polarization_C_per_m2'),
                                               profile.get_array('rotation_R_deg'))):
        print(f' {index:5d}  {energy:11.2f}  {p[0]:5.2f}  {p[1]:5.2f}  {p[2]:5.2f}        '
              f'{r[0]:5.1f}  {r[1]:5.1f}  {r[2]:5.1f}')
    print(f'barrier: potential {summary["barrier_meV_per_fu"]:.2f} meV/f.u., reference on the same images '
          f'{summary["reference_barrier_meV_per_fu"]:.2f} meV/f.u.; path energy RMSE '
          f'{summary.get("path_energy_rmse_meV_per_fu", float("nan")):.2f} meV/f.u.')
    if args.save:
        with open(args.save, 'wb') as handle:
            handle.write(results['plot'].get_content('rb'))


if __name__ == '__main__':
    main()
