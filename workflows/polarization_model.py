"""Train and validate the SA-GPR cell-dipole model (BaTiO3-GAP paper) on displaced BaTiO3 cells, or on a given TrainingSet.

    verdi run workflows/polarization_model.py --berry [--berry-protocol fast] [--pw-code CODE] [--frames 24]
    verdi run workflows/polarization_model.py [--frames 60] [--training-set PK] [--dipoles PK] [--save plot.png]
                                              [--protocol fast|batio3_gap]

The frames are random displacements (0.08 Å) of cubic 5-atom BaTiO3. With ``--berry`` they are labelled by
Quantum ESPRESSO (``BerryPhaseWorkChain``: SCF energies/forces and Berry-phase cell dipoles, branch from the
Born-charge model around the cubic cell). Without it, and without ``--dipoles``, the labels are Born-charge
dipoles (the outputs say so) and the frames are labelled by the reference labeller only because a TrainingSet
holds labelled frames (the dipole model does not use energies or forces).
"""

import argparse

import numpy as np
from aiida import orm

from aiida_ferromlip.codes import add_code_options, codes_from_arguments
from aiida_ferromlip.launch import run_get_node
from aiida_ferromlip.materials import perovskite_polymorph
from aiida_ferromlip.workflows.polarization.model import PolarizationModelWorkChain


TI_SHIFT = 0.12  # Å: one extra Berry-phase frame with only Ti moved, whose dipole is Z*_Ti x shift


def displaced_structures(count: int) -> dict:
    rng = np.random.default_rng(0)
    structures = {}
    for k in range(count):
        atoms = perovskite_polymorph('Ba', 'Ti', 'Pm-3m', lattice=4.0)
        atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
        structures[f'displaced_{k:03d}'] = orm.StructureData(ase=atoms)
    return structures


def displaced_training_set(count: int, code):
    from aiida_ferromlip.workflows.label.base import LabelWorkChain

    builder = LabelWorkChain.get_builder_from_protocol(code,
                                                       displaced_structures(count), protocol='fast')
    results, _ = run_get_node(builder)
    return results['training_set']


def berry_phase_labels(count: int, code, protocol: str):
    """(TrainingSet, dipoles) of the displaced cells from pw.x Berry phases."""
    from aiida_ferromlip.workflows.dft.berry_phase import BerryPhaseWorkChain

    cubic = perovskite_polymorph('Ba', 'Ti', 'Pm-3m', lattice=4.0)
    ti_z = cubic.copy()
    ti_z.positions[[i for i, s in enumerate(cubic.get_chemical_symbols()) if s == 'Ti'][0], 2] += TI_SHIFT
    structures = {**displaced_structures(count), 'ti_z': orm.StructureData(ase=ti_z)}
    builder = BerryPhaseWorkChain.get_builder_from_protocol(code, structures,
                                                           orm.StructureData(ase=cubic), protocol=protocol)
    results, node = run_get_node(builder)
    if not node.is_finished_ok:
        raise SystemExit(f'BerryPhaseWorkChain<{node.pk}> failed: [{node.exit_status}] {node.exit_message}')
    report = results['branch_report'].get_dict()
    residual = np.abs([row['residual_quanta'] for row in report['frames'].values()])
    cost = results['report'].get_dict()
    ti = report['frames']['ti_z']['dipole_e_angstrom']
    print(f'Ti alone moved {TI_SHIFT} Å along z: cell dipole {np.round(ti, 4).tolist()} e·Å -> Z*_Ti = '
          f'{ti[2] / TI_SHIFT:.2f} (Born-charge model: 7.25)')
    print(f'BerryPhaseWorkChain<{node.pk}>: {len(results["training_set"])} frames with Berry-phase dipoles '
          f'(ArrayData<{results["dipoles"].pk}>), {len(report["flagged"])} flagged; Berry - Born residual up to '
          f'{residual.max():.4f} quanta; pw.x wall time {cost["wall_time_total_s"]:.0f} s')
    return results['training_set'], results['dipoles']


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=60)
    parser.add_argument('--training-set', type=int, default=None)
    parser.add_argument('--dipoles', type=int, default=None)
    parser.add_argument('--save', default=None)
    parser.add_argument('--berry', action='store_true', help='Label the displaced cells with pw.x Berry phases.')
    parser.add_argument('--berry-protocol', default='fast', choices=('fast', 'moderate'))
    parser.add_argument('--protocol', default='fast', choices=('fast', 'batio3_gap'),
                        help='fast: kernel zeta 2; batio3_gap: the paper\'s linear kernel of the λ = 1 features.')
    add_code_options(parser, 'label', 'pw')
    args = parser.parse_args()
    codes = codes_from_arguments(parser, args, 'label', 'pw')
    dipoles = None
    if args.berry:
        training_set, dipoles = berry_phase_labels(args.frames, codes['pw'], args.berry_protocol)
    else:
        training_set = orm.load_node(args.training_set) if args.training_set else displaced_training_set(args.frames, codes['label'])
    if args.dipoles:
        dipoles = orm.load_node(args.dipoles)
    builder = PolarizationModelWorkChain.get_builder_from_protocol(training_set, protocol=args.protocol,
                                                                  dipoles=dipoles)
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
