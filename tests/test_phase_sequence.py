"""Finite-temperature phase sequence (BaTiO3-GAP paper, Figs. 1, 5, 6): the analysis on hand-built R/O/T/C trajectories,
and the work chain's NST MD with a small BaTiO3 GAP."""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_ferromlip.materials import perovskite_polymorph
from aiida_ferromlip.workflows.benchmarks.phase_sequence import (
    PhaseSequenceWorkChain,
    classify,
    phase_sequence,
    pseudocubic_cell,
)

from .test_sample_select import md_code  # noqa: F401  (fixture)


def equivalent_variant(atoms, index):
    """A symmetry-equivalent twin of a pseudocubic cell: the axes permuted and one mirrored (the polarization
    hopping between equivalent directions, as a finite cell does in MD)."""
    order = [(0, 1, 2), (1, 2, 0), (2, 0, 1)][index % 3]
    twin = atoms.copy()
    twin.set_cell(atoms.cell.array[np.ix_(order, order)])
    twin.positions = atoms.positions[:, order]
    if index % 2:
        twin.positions[:, 0] *= -1
    twin.wrap()
    return twin


def trajectory(phase, temperature, frames=6, start_phase=None):
    """``frames`` noisy copies of ``phase`` (3x3x3), hopping between equivalent variants; the first half is
    ``start_phase`` when given (an unequilibrated start the analysis must discard)."""
    atoms_list = []
    for k in range(frames):
        name = start_phase if (start_phase and k < frames // 2) else phase
        atoms = perovskite_polymorph('Ba', 'Ti', name, supercell=(3, 3, 3))
        atoms.rattle(0.01, seed=k + int(temperature))
        atoms_list.append(equivalent_variant(atoms, k))
    result = orm.TrajectoryData()
    result.set_trajectory(symbols=atoms_list[0].get_chemical_symbols(),
                          positions=np.array([a.positions for a in atoms_list]),
                          cells=np.array([a.cell.array for a in atoms_list]), pbc=[True] * 3)
    result.set_array('target_temperatures', np.full(frames, float(temperature)))
    result.set_array('temperatures', np.full(frames, float(temperature) + 1))
    return result


def test_classification_by_ordered_components():
    assert classify([0.30, 0.29, 0.28], 0.05, 0.5) == 'R'
    assert classify([0.30, 0.25, 0.02], 0.05, 0.5) == 'O'
    assert classify([0.30, 0.10, 0.02], 0.05, 0.5) == 'T'
    assert classify([0.04, 0.03, 0.02], 0.05, 0.5) == 'C'


def test_pseudocubic_lattice_of_the_tetragonal_phase():
    lattice, angles = pseudocubic_cell(perovskite_polymorph('Ba', 'Ti', 'P4mm', supercell=(2, 3, 4)), 24)
    assert lattice[2] > lattice[0] == pytest.approx(lattice[1])       # c > a = b, whatever the repeats
    assert 3.9 < lattice[0] < 4.1 and np.allclose(angles, 90)


def test_analysis_finds_r_o_t_c_and_the_transitions_between():
    trajectories = {'T_0010K': trajectory('R3m', 10, start_phase='Pm-3m'),  # unequilibrated start discarded
                    'T_0100K': trajectory('Amm2', 100), 'T_0200K': trajectory('P4mm', 200),
                    'T_0300K': trajectory('Pm-3m', 300)}
    results = phase_sequence(orm.Dict({'equilibration_fraction': 0.5}), **trajectories)
    summary = results['summary'].get_dict()
    assert summary['sequence'] == ['R', 'O', 'T', 'C']
    assert [(t['from'], t['to'], t['temperature_K']) for t in summary['transitions']] == [
        ('R', 'O', 55.0), ('O', 'T', 150.0), ('T', 'C', 250.0)]
    rows = {row['key']: row for row in summary['temperatures']}
    assert rows['T_0010K']['frames_analysed'] == 3
    # the variants hop: the mean polarization vector is smaller than the mean sorted |P| components say
    r = rows['T_0010K']
    assert np.linalg.norm(r['mean_polarization_c_m2']) < np.linalg.norm(r['sorted_abs_polarization_c_m2'])
    assert 'Born effective charges' in summary['polarization_from']
    # sorted per frame, the tetragonal c > a = b survives the hopping between variants; the cubic cell has none
    t = rows['T_0200K']['lattice_A']
    assert t[0] - t[1] > 0.02 and t[1] == pytest.approx(t[2], abs=1e-6)
    assert np.ptp(rows['T_0300K']['lattice_A']) < 1e-6
    arrays = results['order_parameters']
    assert arrays.get_array('T_0100K_unit_cell_polarization').shape == (3 * 27, 3)  # half of 6 frames kept
    assert arrays.get_array('T_0200K_lattice').shape == (3, 3)
    assert results['plot'].get_content('rb')[:4] == b'\x89PNG'
    # a temperature where the potential broke the crystal is labelled, not classified nor part of a transition
    exploded = trajectory('Pm-3m', 400)
    cells = exploded.get_cells()
    rng = np.random.default_rng(1)   # atoms scattered at random through the cell: no B-centred cages left
    positions = rng.uniform(size=exploded.get_positions().shape) @ cells[0]
    broken = orm.TrajectoryData()
    broken.set_trajectory(symbols=exploded.symbols, positions=positions, cells=cells, pbc=[True] * 3)
    for name in ('target_temperatures', 'temperatures'):
        broken.set_array(name, exploded.get_array(name))
    with_broken = phase_sequence(orm.Dict({}), T_0300K=trajectories['T_0300K'], T_0400K=broken,
                                 T_0200K=trajectories['T_0200K'])['summary']
    assert with_broken['sequence'] == ['T', 'C', 'broken'] and with_broken['broken_at_K'] == [400.0]
    assert [t['to'] for t in with_broken['transitions']] == ['C']
    assert with_broken['temperatures'][2]['broken_frames'] == 3
    # the analysis could have said otherwise: a threshold above the polarization calls every phase cubic
    everything_cubic = phase_sequence(orm.Dict({'polar_threshold_c_m2': 5.0}), **trajectories)
    assert everything_cubic['summary']['sequence'] == ['C'] * 4 and not everything_cubic['summary']['transitions']


def test_phase_sequence_workflow_with_a_small_gap(md_code, gap_potential):  # noqa: F811
    builder = PhaseSequenceWorkChain.get_builder_from_protocol(md_code, gap_potential, protocol='fast')
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    summary = results['summary'].get_dict()
    assert [row['temperature_K'] for row in summary['temperatures']] == [50, 600]
    assert set(summary['sequence']) <= {'R', 'O', 'T', 'C'} and summary['atoms'] == 40
    for row in summary['temperatures']:
        assert row['frames_analysed'] == 6                       # 11 frames (40 steps, stride 4), half discarded
        assert all(3.7 < a < 4.3 for a in row['lattice_A'])      # the NST cell stays a perovskite
    assert sorted(results['trajectories']) == ['T_0050K', 'T_0600K']
    md = node.called[0]
    assert md.inputs.parameters['ensemble'] == 'nst' and md.outputs.statistics['exchange'] is None
    cells = results['trajectories']['T_0600K'].get_cells()
    assert np.abs(cells[-1] - cells[0]).max() > 1e-3            # the barostat moved the cell
    assert results['plot'].get_content('rb')[:4] == b'\x89PNG'


def test_bad_phase_sequence_inputs_fail_before_md(md_code, gap_potential):  # noqa: F811
    jobs_before = orm.QueryBuilder().append(orm.CalcJobNode).count()
    cases = {'fully flexible cell': {'sample': {'parameters': {'ensemble': 'nvt'}}},
             'unknown phase-sequence analysis parameters': {'analysis': {'equilibration': 0.2}},
             'equilibration_fraction': {'analysis': {'equilibration_fraction': 1.0}}}
    for message, overrides in cases.items():
        builder = PhaseSequenceWorkChain.get_builder_from_protocol(md_code, gap_potential, protocol='fast',
                                                                   overrides=overrides)
        with pytest.raises(ValueError, match=message):
            run_get_node(builder)
    fluorite = orm.StructureData(ase=perovskite_polymorph('Ba', 'Ti', 'Pm-3m')[[0, 2, 3]].repeat(2))
    builder = PhaseSequenceWorkChain.get_builder_from_protocol(md_code, gap_potential, structure=fluorite,
                                                               protocol='fast')
    with pytest.raises(ValueError, match='not an ABO3 perovskite'):
        run_get_node(builder)
    assert orm.QueryBuilder().append(orm.CalcJobNode).count() == jobs_before


def test_analysis_with_a_polarization_model_uses_its_partial_dipoles():
    """A model trained on Born-charge dipoles reads the same phases from its Ti-centred cell dipoles."""
    from aiida_ferromlip.analysis.polarization_model import SparseDipoleModel
    from aiida_ferromlip.analysis.soap import soap_hypers
    from aiida_ferromlip.data.polarization import PolarizationModel
    from aiida_ferromlip.materials.order_parameters import local_dipoles

    rng = np.random.default_rng(4)
    cells = []
    for _ in range(40):
        atoms = perovskite_polymorph('Ba', 'Ti', 'Pm-3m')
        atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
        cells.append(atoms)
    model = SparseDipoleModel(soap_hypers(4.5, 4, 3), [8, 22, 56], zeta=2).fit(
        cells, np.array([local_dipoles(a)[1].sum(axis=0) for a in cells]), 30, 1e-4)
    node = PolarizationModel.from_model(model).store()
    trajectories = {'T_0010K': trajectory('R3m', 10, frames=2), 'T_0300K': trajectory('Pm-3m', 300, frames=2)}
    summary = phase_sequence(orm.Dict({'equilibration_fraction': 0.0}), polarization_model=node,
                             **trajectories)['summary']
    assert summary['sequence'] == ['R', 'C'] and f'PolarizationModel<{node.pk}>' in summary['polarization_from']
