"""Polymorph energy ranking (seed 000 Tables I-II): a GAP against SevenNet-0 on the BaTiO3 polymorphs."""

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_ferromlip.materials import batio3_polymorphs
from aiida_ferromlip.workflows.benchmarks.polymorphs import PolymorphRankingWorkChain


def polymorphs(*phases):
    cells = batio3_polymorphs(supercell=(1, 1, 1))
    return {p.replace('-', '_'): orm.StructureData(ase=cells[p]) for p in phases}


def test_batio3_ranking_gap_against_reference(gap_potential):
    builder = PolymorphRankingWorkChain.get_builder()
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
    for row in table['rows']:
        assert row['deviation_meV_per_fu'] == pytest.approx(row['potential_meV_per_fu'] - row['reference_meV_per_fu'])
    assert '| R3m' in table['markdown'] and 'relative to Pm_3m' in table['markdown']
    assert results['csv'].get_content().splitlines()[0].startswith('polymorph,reference_meV_per_fu')
    assert results['plot'].get_content('rb')[:4] == b'\x89PNG'


def test_unconverged_relaxation_is_flagged_not_fatal(gap_potential):
    builder = PolymorphRankingWorkChain.get_builder()
    builder.potential = gap_potential
    builder.structures = polymorphs('R3m', 'Pm-3m')
    builder.parameters = orm.Dict({'max_steps': 1, 'fmax': 1e-6})
    results, node = run_get_node(builder)
    assert node.is_finished_ok
    table = results['table'].get_dict()
    assert 'R3m (reference)' in table['not_converged'] and len(table['rows']) == 2
    assert '(not converged)' in table['markdown']


def test_bad_ranking_inputs(gap_potential):
    builder = PolymorphRankingWorkChain.get_builder()
    builder.potential = gap_potential
    builder.structures = polymorphs('R3m')
    with pytest.raises(ValueError, match='at least two polymorphs'):
        run_get_node(builder)
    builder.structures = polymorphs('R3m', 'P4mm')
    builder.parameters = orm.Dict({'reference_phase': 'Amm2'})
    with pytest.raises(ValueError, match='reference_phase `Amm2` is not one of'):
        run_get_node(builder)
