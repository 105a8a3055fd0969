"""Polymorph energy ranking (minimalist paper, Tables I-II): a GAP against SevenNet-0 on the BaTiO3 polymorphs."""

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_ferromlip import materials
from aiida_ferromlip.materials import batio3_polymorphs
from aiida_ferromlip.calculations.atoms_task import AtomsTaskCalculation
from aiida_ferromlip.workflows.benchmarks.polymorphs import (PolymorphRankingWorkChain, relax_task, task_rows,
                                                             tabulate_ranking)
from aiida_ferromlip.workflows.dft.qe import pw_relax_builder

from .test_qe_label import pseudo_family, pw_code, upf_directory  # noqa: F401  (fixtures)


def polymorphs(*phases):
    cells = batio3_polymorphs(supercell=(1, 1, 1))
    return {p.replace('-', '_'): orm.StructureData(ase=cells[p]) for p in phases}


def test_batio3_ranking_gap_against_reference(gap_potential, task_code):
    builder = PolymorphRankingWorkChain.get_builder()
    builder.task_code = task_code
    builder.potential = gap_potential
    builder.structures = polymorphs('R3m', 'P4mm', 'Pm-3m')
    builder.parameters = orm.Dict({'reference_phase': 'Pm_3m', 'fmax': 0.02})
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    table = results['table'].get_dict()
    rows = {row['polymorph']: row for row in table['rows']}

    # SevenNet-0 ranks BaTiO3 as the experiment does at 0 K: R3m below P4mm below the cubic phase.
    assert table['order_reference'] == ['R3m', 'P4mm', 'Pm_3m']
    assert rows['Pm_3m']['reference_meV_per_fu'] == 0.0 and rows['R3m']['reference_meV_per_fu'] < -5
    # symmetry is kept: the cubic cell stays cubic, the tetragonal one tetragonal
    a, b, c = rows['Pm_3m']['reference_cell_lengths']
    assert a == pytest.approx(b) == pytest.approx(c)
    a, b, c = rows['P4mm']['reference_cell_lengths']
    assert a == pytest.approx(b, abs=1e-4) and c > a
    assert '| R3m' in table['markdown'] and 'relative to Pm_3m' in table['markdown']
    assert results['csv'].get_content().splitlines()[0].startswith('polymorph,reference_meV_per_fu')
    assert results['plot'].get_content('rb')[:4] == b'\x89PNG'
    # both sides relaxed as jobs on the computer, not inside the daemon
    jobs = {link.link_label: link.node for link in node.base.links.get_outgoing().all()}
    assert jobs['relax_potential'].process_label == jobs['relax_reference'].process_label == 'AtomsTaskCalculation'
    assert jobs['relax_reference'].inputs.model.value == '7net-0'


def test_unconverged_relaxation_is_flagged_not_fatal(gap_potential, task_code):
    builder = PolymorphRankingWorkChain.get_builder()
    builder.task_code = task_code
    builder.potential = gap_potential
    builder.structures = polymorphs('R3m', 'Pm-3m')
    builder.parameters = orm.Dict({'max_steps': 1, 'fmax': 1e-6})
    results, node = run_get_node(builder)
    assert node.is_finished_ok
    table = results['table'].get_dict()
    assert 'R3m (reference)' in table['not_converged'] and len(table['rows']) == 2
    assert '(not converged)' in table['markdown']


def test_bad_ranking_inputs(gap_potential, task_code):
    builder = PolymorphRankingWorkChain.get_builder()
    builder.task_code = task_code
    builder.potential = gap_potential
    builder.structures = polymorphs('R3m')
    with pytest.raises(ValueError, match='at least two polymorphs'):
        run_get_node(builder)
    builder.structures = polymorphs('R3m', 'P4mm')
    builder.parameters = orm.Dict({'reference_phase': 'Amm2'})
    with pytest.raises(ValueError, match='reference_phase `Amm2` is not one of'):
        run_get_node(builder)


def test_hfo2_phases_ranked_by_the_reference_model_as_pbesol_does(task_code):
    """The shipped HfO2 builders relax, in their space groups, into the phases of the minimalist paper Table II: SevenNet-0
    orders them monoclinic < oI < oIII < tetragonal < cubic, as PBEsol does (0, 16, 64, 139, 207 meV/f.u.)."""
    structures = {name: orm.StructureData(ase=atoms) for name, atoms in materials.polymorphs('HfO2').items()}
    settings = {'fmax': 0.02, 'max_steps': 400, 'relax_cell': True, 'symprec': 1e-3}
    results, node = run_get_node(AtomsTaskCalculation, code=task_code, model=orm.Str('7net-0'), structures=structures,
                                 task=orm.Dict(relax_task(settings)))
    assert node.is_finished_ok, node.exit_message
    rows = task_rows(results['results'].get_dict())
    assert all(row['converged'] for row in rows.values())
    energy = {name: 1000 * (row['energy_per_fu_eV'] - rows['monoclinic']['energy_per_fu_eV']) for name, row in rows.items()}
    assert sorted(energy, key=energy.get) == ['monoclinic', 'oI', 'oIII', 'tetragonal', 'cubic']
    assert 30 < energy['oIII'] < 120 and 150 < energy['cubic'] < 350   # meV/f.u.; PBEsol: 64 and 207
    a, b, c = rows['cubic']['cell_lengths']
    assert a == pytest.approx(b) == pytest.approx(c)


def test_a_failed_reference_relaxation_keeps_a_flagged_row():
    """What the pw.x side hands over when one vc-relax failed: the polymorph is missing on the reference side."""
    def row(energy, c=4.0):
        return {'energy_per_fu_eV': energy, 'cell_lengths': [4.0, 4.0, c], 'cell_angles': [90.0] * 3,
                'volume_per_fu': 64.0, 'converged': True, 'steps': 3}

    reference = orm.Dict({'cubic': row(-40.0), 'tetragonal': row(-40.02, 4.1)})
    potential = orm.Dict({'cubic': row(-39.0), 'tetragonal': row(-39.03, 4.2), 'rhombohedral': row(-39.05)})
    results = tabulate_ranking(reference, potential, orm.Dict({'reference_phase': 'cubic'}))
    table = results['table'].get_dict()
    rows = {r['polymorph']: r for r in table['rows']}
    assert table['reference_failed'] == ['rhombohedral'] and rows['rhombohedral']['reference_meV_per_fu'] is None
    assert rows['tetragonal']['reference_meV_per_fu'] == pytest.approx(-20.0)
    assert rows['tetragonal']['deviation_meV_per_fu'] == pytest.approx(-10.0)
    assert rows['tetragonal']['lattice_deviation_percent'][2] == pytest.approx(100 * 0.1 / 4.1)
    assert table['order_reference'] == ['tetragonal', 'cubic'] and table['same_order']
    assert '| rhombohedral (reference relaxation failed) | - | -50.0 |' in table['markdown']
    assert results['plot'].get_content('rb')[:4] == b'\x89PNG'


def test_pw_reference_inputs(gap_potential, pw_code, pseudo_family, task_code):
    """With a pw.x code the reference is one vc-relax per polymorph with the label protocol's settings; bad DFT
    inputs are refused before any job (here: a magnetic element without a chosen order)."""
    structures = {name: atoms for name, atoms in materials.polymorphs('BaTiO3').items() if name in ('P4mm', 'Pm-3m')}
    builder = PolymorphRankingWorkChain.get_builder_from_protocol(task_code, gap_potential, structures, qe_code=pw_code,
                                                                  overrides={'parameters': {'reference_phase': 'Pm-3m'}})
    assert sorted(builder.structures) == ['P4mm', 'Pm_3m'] and builder.parameters['reference_phase'] == 'Pm_3m'
    assert builder.reference_qe.protocol.value == 'fast'
    relax = pw_relax_builder(builder.reference_qe, builder.structures['P4mm'])
    parameters = relax.base_relax.pw.parameters.get_dict()
    assert parameters['CONTROL']['calculation'] == 'vc-relax' and parameters['CELL']['cell_dofree'] == 'all'
    assert parameters['SYSTEM']['ecutwfc'] == 30 and not parameters['SYSTEM'].get('nosym')  # symmetry kept
    assert 'base_init_relax' not in relax
    fixed = pw_relax_builder(builder.reference_qe, builder.structures['P4mm'], relax_cell=False)
    assert fixed.base_relax.pw.parameters['CONTROL']['calculation'] == 'relax'
    # the physics card's force threshold in pw.x's unit: 0.005 eV/Å = 1.945e-4 Ry/bohr (1 Ry/bohr = 25.711 eV/Å)
    card = pw_relax_builder(builder.reference_qe, builder.structures['P4mm'], fmax=0.005)
    assert card.base_relax.pw.parameters['CONTROL']['forc_conv_thr'] == pytest.approx(1.9447e-4, rel=1e-3)
    assert parameters['CONTROL']['forc_conv_thr'] != pytest.approx(1.9447e-4, rel=1e-3)  # not the protocol's own
    # a cell relaxation at the fast protocol's 30 Ry (below the family's recommendation) is refused before any job
    with pytest.raises(ValueError, match='follows the Pulay stress of the basis'):
        run_get_node(builder)

    bifeo3 = PolymorphRankingWorkChain.get_builder_from_protocol(
        task_code, gap_potential, {'R3c': materials.polymorphs('BaTiO3')['R3m']}, qe_code=pw_code)
    bifeo3.structures = {name: orm.StructureData(ase=atoms) for name, atoms in materials.polymorphs('BiFeO3').items()}
    with pytest.raises(ValueError, match='which the potential does not know'):
        run_get_node(bifeo3)


@pytest.mark.manual
def test_pw_relax_reference(gap_potential, pw_code, pseudo_family, task_code):
    """pw.x relaxes cubic and tetragonal BaTiO3 in their space groups (fast protocol, fixed cells, minutes): P4mm
    lies below Pm-3m and stays tetragonal, and the table's reference side comes from the PwRelaxWorkChains."""
    structures = {name: atoms for name, atoms in materials.polymorphs('BaTiO3').items() if name in ('P4mm', 'Pm-3m')}
    builder = PolymorphRankingWorkChain.get_builder_from_protocol(
        task_code, gap_potential, structures, qe_code=pw_code, overrides={'parameters': {'reference_phase': 'Pm-3m', 'relax_cell': False}})
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    rows = {row['polymorph']: row for row in results['table']['rows']}
    assert rows['P4mm']['reference_meV_per_fu'] < 0 and rows['Pm_3m']['reference_meV_per_fu'] == 0.0
    a, b, c = rows['P4mm']['reference_cell_lengths']
    assert a == pytest.approx(b, abs=1e-4) and c > a
    relaxations = [n for n in node.called if n.process_label == 'PwRelaxWorkChain']
    assert len(relaxations) == 2 and all(n.is_finished_ok for n in relaxations)
    reference_side = results['table'].creator.inputs.reference.creator
    assert reference_side.process_label == 'pw_relaxed_polymorphs'
