"""Train and validate the SA-GPR cell-dipole model (seed 003) on displaced BaTiO3 cells, or on a given TrainingSet.

    verdi run workflows/polarization_model.py [--frames 60] [--training-set PK] [--dipoles PK] [--save plot.png]

Without ``--dipoles`` the labels are Born-charge dipoles (no Berry-phase labels exist here; the outputs say so).
The frames are random displacements (0.08 Å) of cubic 5-atom BaTiO3, labelled by the reference labeller only
because a TrainingSet holds labelled frames (the dipole model does not use energies or forces).
"""

import argparse

import numpy as np
from aiida import orm
from aiida.engine import run_get_node

from aiida_ferromlip.workflows.polarization import PolarizationModelWorkChain


def displaced_training_set(count: int):
    from aiida_ferromlip.materials import perovskite_polymorph
    from aiida_ferromlip.workflows.label import LabelWorkChain

    rng = np.random.default_rng(0)
    structures = {}
    for k in range(count):
        atoms = perovskite_polymorph('Ba', 'Ti', 'Pm-3m', lattice=4.0)
        atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
        structures[f'displaced_{k:03d}'] = orm.StructureData(ase=atoms)
    builder = LabelWorkChain.get_builder_from_protocol(orm.load_code('ferromlip-label@localhost'), structures,
                                                       protocol='fast')
    results, _ = run_get_node(builder)
    return results['training_set']


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=60)
    parser.add_argument('--training-set', type=int, default=None)
    parser.add_argument('--dipoles', type=int, default=None)
    parser.add_argument('--save', default=None)
    args = parser.parse_args()
    builder = PolarizationModelWorkChain.get_builder()
    builder.training_set = (orm.load_node(args.training_set) if args.training_set
                            else displaced_training_set(args.frames))
    if args.dipoles:
        builder.dipoles = orm.load_node(args.dipoles)
    results, node = run_get_node(builder)
    metrics = results['metrics'].get_dict()
    print(f'\nPolarizationModelWorkChain<{node.pk}> -> PolarizationModel<{results["model"].pk}>; labels: '
          f'{metrics["label_source"]}')
    print(f'validation ({metrics["validation_frames"]} frames): RMSE {metrics["rmse_per_cell_e_angstrom"]:.3f} e·Å per '
          f'cell, {metrics["rmse_per_atom_e_angstrom"]:.4f} e·Å per atom; label spread '
          f'{metrics["label_std_e_angstrom"]:.3f} e·Å')
    print('learning curve (training frames, RMSE per cell, per atom):')
    for size, cell, atom in results['learning_curve'].get_array('learning_curve'):
        print(f'  {int(size):4d}  {cell:.3f}  {atom:.4f}')
    if args.save:
        with open(args.save, 'wb') as handle:
            handle.write(results['plot'].get_content('rb'))


if __name__ == '__main__':
    main()
