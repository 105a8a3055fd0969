"""Vortex-antivortex texture (minimalist paper, Fig. 4): a BaTiO3 supercell whose Ti dipoles form a vortex-antivortex
lattice and the homogeneous in-plane [110] state, both relaxed with a potential; the reference labeller's energies on
the same relaxed cells.

    verdi run workflows/vortex_texture.py --potential PK [--size 6] [--layers 1] [--lattice 4.035] [--relax-cell]
        [--save map.png]
"""

import argparse

from aiida import orm

from aiida_ferromlip.codes import add_code_options, codes_from_arguments
from aiida_ferromlip.launch import run_get_node
from aiida_ferromlip.materials import dipole_texture
from aiida_ferromlip.workflows.benchmarks.texture import VortexTextureWorkChain


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--potential', type=int, required=True)
    parser.add_argument('--size', type=int, default=6)
    parser.add_argument('--layers', type=int, default=1)
    parser.add_argument('--amplitude', type=float, default=0.12, help='Ti displacement of the start field, Å')
    parser.add_argument('--lattice', type=float, default=4.0,
                        help="cubic lattice parameter of the supercell, Å (SevenNet-0's own equilibrium: 4.035)")
    parser.add_argument('--relax-cell', action='store_true')
    parser.add_argument('--save', default=None)
    add_code_options(parser, 'label', 'task')
    args = parser.parse_args()
    codes = codes_from_arguments(parser, args, 'label', 'task')
    shape = {'size': args.size, 'layers': args.layers, 'amplitude': args.amplitude, 'lattice': args.lattice}
    builder = VortexTextureWorkChain.get_builder_from_protocol(
        codes['label'], codes['task'], orm.load_node(args.potential),
        overrides={'parameters': {'relax_cell': args.relax_cell}},
        texture=orm.StructureData(ase=dipole_texture(**shape)),
        homogeneous=orm.StructureData(ase=dipole_texture(kind='homogeneous', **shape)))
    results, node = run_get_node(builder)
    if not node.is_finished_ok:
        raise SystemExit(f'VortexTextureWorkChain<{node.pk}> failed: {node.exit_message}')
    summary = results['summary'].get_dict()
    print(f'\nVortexTextureWorkChain<{node.pk}>, {args.size}x{args.size}x{args.layers} cells, potential {args.potential}')
    for name in ('texture', 'homogeneous'):
        row = summary[name]
        print(f'{name:12s} E {row["energy_per_fu_eV"]:.5f} eV/f.u.; {row["vortices"]} vortices, {row["antivortices"]} '
              f'antivortices after relaxation; in-plane dipoles x{row["in_plane_dipole_ratio"]:.2f}; '
              f'{"converged" if row["converged"] else "NOT converged"} in {row["steps"]} steps')
    print(f'texture {"survives" if summary["texture_survives"] else "does not survive"}; '
          f'E(texture) - E(homogeneous) = {summary["energy_difference_meV_per_fu"]:.2f} meV/f.u. (the minimalist paper DFT: 9)')
    if summary['reference_complete']:
        print(f'reference on the same cells: {summary["reference_energy_difference_meV_per_fu"]:.2f} meV/f.u. '
              f'(potential {summary["energy_difference_deviation_meV_per_fu"]:+.2f}); its largest force on the '
              f'relaxed texture {summary["texture"]["reference_max_force_eV_per_A"]:.3f} eV/Å, on the homogeneous '
              f'state {summary["homogeneous"]["reference_max_force_eV_per_A"]:.3f} eV/Å')
    if args.save:
        with open(args.save, 'wb') as handle:
            handle.write(results['plot'].get_content('rb'))


if __name__ == '__main__':
    main()
