"""Label BaTiO3 with Quantum ESPRESSO (pw.x, PBEsol pslibrary family) through the LabelWorkChain.

    verdi run workflows/batio3_label_qe.py                           # 5-atom cell, Ti displaced: force vs -dE/dz
    verdi run workflows/batio3_label_qe.py --atoms 40 --protocol batio3_gap   # one rattled 40-atom R3m cell (slow)
    verdi run workflows/batio3_label_qe.py --eos --protocol five_atom   # the physics card's 7 EOS cells

The 5-atom run labels the cubic cell with Ti moved by d and d ± h along z and compares the Ti force with the
finite difference of the energy (the labels are self-consistent at any cutoff). The 40-atom run is the seed
protocol's real cost: ~1-2 h on 2 cores (cutoffs of the family, 3x3x3 k-points); it prints the cost per label.
``--eos`` labels the physics card's equation-of-state cells (cubic 5-atom BaTiO3, the card protocol's lattice strains
around a = 4.00 Å) and fits them as the card does (Birch-Murnaghan): whether a label protocol gives a smooth E(V)
whose pressure matches the stress pw.x reports — what the card's labeller side needs.
"""

import argparse

import numpy as np
from aiida import orm
from ase.units import GPa

from aiida_ferromlip.codes import add_code_options, codes_from_arguments
from aiida_ferromlip.launch import run_get_node
from aiida_ferromlip.materials import batio3_polymorphs, rattled_strained
from aiida_ferromlip.materials.paths import strained_copies
from aiida_ferromlip.provenance import labelling_calculations
from aiida_ferromlip.workflows.benchmarks.physics_card import PhysicsCardWorkChain
from aiida_ferromlip.workflows.label.base import LabelWorkChain


def cubic(dz: float, a: float = 4.0):
    atoms = batio3_polymorphs(supercell=(1, 1, 1))['Pm-3m']
    atoms.set_cell(np.eye(3) * a, scale_atoms=True)
    index = atoms.get_chemical_symbols().index('Ti')
    atoms.positions[index, 2] += dz
    return atoms, index


def eos_report(training_set):
    """Mesh each cell ran with, the card's Birch-Murnaghan fit, and the pressure of pw.x's stress against -dE/dV."""
    from ase.eos import birchmurnaghan

    from aiida_ferromlip.analysis.physics_card import equation_of_state

    rows = []
    for index, origin in enumerate(training_set.origins):
        atoms = training_set.get_frame(index)
        mesh = orm.load_node(origin['process_uuid']).inputs.kpoints.get_kpoints_mesh()[0]
        rows.append((atoms.get_volume(), atoms.get_potential_energy(), 'x'.join(map(str, mesh)),
                     -np.trace(atoms.get_stress(voigt=False)) / 3 / GPa))
    rows.sort()
    volumes, energies = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    fit = equation_of_state(volumes, energies)
    parameters = fit['birch_murnaghan']
    print('\n a (Å)    k-mesh   E (eV/f.u.)    E - fit (meV)  p from stress (GPa)  -dE/dV of the fit (GPa)')
    for volume, energy, mesh, pressure in rows:
        step = 1e-4 * volume
        slope = (birchmurnaghan(volume + step, *parameters) - birchmurnaghan(volume - step, *parameters)) / (2 * step)
        print(f' {volume ** (1 / 3):.4f}   {mesh:7s} {energy:14.5f} {1000 * (energy - birchmurnaghan(volume, *parameters)):12.2f}'
              f' {pressure:18.2f} {-slope / GPa:22.2f}')
    print(f'\nBirch-Murnaghan (as the card fits it): a0 = {fit["lattice"]:.4f} Å, B = {fit["bulk_modulus_GPa"]:.0f} GPa, '
          f'minimum inside the points: {fit["inside"]}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--atoms', type=int, choices=(5, 40), default=5)
    parser.add_argument('--protocol', default=None, help='label protocol (default: fast for 5 atoms, batio3_gap for 40)')
    parser.add_argument('--mpiprocs', type=int, default=None, help='MPI ranks per pw.x run (40-atom cells)')
    parser.add_argument('--eos', action='store_true', help="the physics card's EOS cells (5 atoms)")
    add_code_options(parser, 'pw')
    args = parser.parse_args()
    codes = codes_from_arguments(parser, args, 'pw')
    code = codes['pw']

    if args.eos:
        strains = PhysicsCardWorkChain.get_protocol_inputs('fast')['parameters']['eos_strains']
        structures = {f'eos_{index}': orm.StructureData(ase=atoms) for index, atoms in
                      enumerate(strained_copies(cubic(0.0)[0], strains))}
        protocol = args.protocol or 'fast'
    elif args.atoms == 5:
        d, h = 0.08, 0.02
        structures = {name: orm.StructureData(ase=cubic(dz)[0])
                      for name, dz in (('ti_d', d), ('ti_d_plus_h', d + h), ('ti_d_minus_h', d - h))}
        protocol = args.protocol or 'fast'
    else:
        r3m = batio3_polymorphs()['R3m']
        structures = {'R3m_rattled': orm.StructureData(ase=rattled_strained(r3m, 1, rattle=0.05, strain=0.01)[0])}
        protocol = args.protocol or 'batio3_gap'
    overrides = {}
    if args.mpiprocs:
        overrides = {'qe': {'options': {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': args.mpiprocs}}}}
    builder = LabelWorkChain.get_builder_from_protocol(code, structures, engine='qe', protocol=protocol,
                                                       overrides=overrides)
    results, node = run_get_node(builder)
    print(f'\nLabelWorkChain<{node.pk}> ({protocol}): exit status {node.exit_status}')
    if 'training_set' not in results:
        print(results['failed_frames'].get_dict())
        return
    training_set = results['training_set']
    frames = {o['frame_key']: training_set.get_frame(i) for i, o in enumerate(training_set.origins)}
    batch = orm.load_node(results['cost']['batches'][0]['pk'])
    cost = batch.outputs.report.get_dict()

    print('\n frame            E (eV)          max|F| (eV/Å)  stress trace/3 (GPa)  SCF it.  wall (s)')
    for key, atoms in sorted(frames.items()):
        trace = np.trace(atoms.get_stress(voigt=False)) / 3 / GPa  # ASE sign: negative = the cell pushes out
        frame_cost = cost['frames'][key]
        print(f' {key:15s} {atoms.get_potential_energy():14.5f} {np.abs(atoms.get_forces()).max():14.4f}'
              f' {trace:20.2f} {frame_cost["scf_iterations"]:8d} {frame_cost["wall_time_s"]:9.1f}')
    if args.eos:
        eos_report(training_set)
    elif args.atoms == 5:
        index = cubic(0.0)[1]
        force = frames['ti_d'].get_forces()[index, 2]
        fd = -(frames['ti_d_plus_h'].get_potential_energy() - frames['ti_d_minus_h'].get_potential_energy()) / (2 * h)
        print(f'\nTi force along z at d = {d} Å: {force:+.4f} eV/Å; -dE/dz by finite differences (h = {h} Å): '
              f'{fd:+.4f} eV/Å; sum of forces {np.abs(frames["ti_d"].get_forces().sum(axis=0)).max():.1e} eV/Å')
    print(f'Cost: {cost["wall_time_total_s"]:.0f} s of pw.x, {cost["scf_iterations_total"]} SCF iterations, '
          f'{cost["restarts_total"]} restart(s)')
    calcs = labelling_calculations(training_set)
    print(f'Provenance: TrainingSet<{training_set.pk}> <- {", ".join(f"{c.process_label}<{c.pk}>" for c in calcs)}')


if __name__ == '__main__':
    main()
