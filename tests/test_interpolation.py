"""Interpolation benchmark of the minimalist paper (Fig. 2): a GAP's errors on equispaced MD frames against the reference."""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase import units
from ase.md.langevin import Langevin

from aiida_ferromlip.materials import batio3_polymorphs
from aiida_ferromlip.workflows.benchmarks.interpolation import InterpolationBenchmarkWorkChain, equispaced


def gap_trajectory(potential, phase: str, steps: int = 100) -> orm.TrajectoryData:
    atoms = batio3_polymorphs()[phase]
    atoms.calc = potential.calculator()
    dynamics = Langevin(atoms, 2 * units.fs, temperature_K=300, friction=0.02, rng=np.random.default_rng(0))
    positions, cells = [], []
    for _ in range(steps):
        dynamics.run(1)
        positions.append(atoms.get_positions())
        cells.append(atoms.cell.array.copy())
    trajectory = orm.TrajectoryData()
    trajectory.set_trajectory(atoms.get_chemical_symbols(), np.array(positions), cells=np.array(cells), pbc=[True] * 3)
    return trajectory.store()


def test_equispaced_picks_centred_frames():
    assert equispaced(100, 0.05, 1) == [10, 30, 50, 70, 90]
    assert equispaced(30, 0.01, 1) == [15]          # 1 % of 30 rounds to 0: the minimum keeps one
    assert equispaced(3, 1.0, 1) == [0, 1, 2]


def test_gap_errors_on_md_frames(gap_potential, label_code, task_code, sevennet):
    trajectories = {'R3m': gap_trajectory(gap_potential, 'R3m'), 'P4mm': gap_trajectory(gap_potential, 'P4mm')}
    builder = InterpolationBenchmarkWorkChain.get_builder_from_protocol(
        label_code, task_code, gap_potential, overrides={'parameters': {'fraction': 0.05}}, trajectories=trajectories)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    metrics = results['metrics'].get_dict()
    assert metrics['num_frames'] == 10 and metrics['num_frames_with_stress'] == 10

    histograms = results['histograms']
    energy_errors = histograms.get_array('energy_meV_per_fu_errors')
    assert energy_errors.shape == (10,)
    assert histograms.get_array('force_components_meV_per_A_errors').shape == (10 * 40 * 3,)
    assert np.sqrt(np.mean(energy_errors**2)) == pytest.approx(metrics['energy_per_fu_meV_rmse'])
    for name in ('energy_meV_per_fu', 'force_components_meV_per_A', 'stress_components_kbar'):
        density, edges = histograms.get_array(f'{name}_density'), histograms.get_array(f'{name}_edges')
        assert np.sum(density * np.diff(edges)) == pytest.approx(1.0)  # normalised

    # one picked frame by hand: the GAP's energy minus SevenNet-0's, per formula unit (8 in 40 atoms)
    frame = results['reference_labels'].get_frame(0)
    key = results['reference_labels'].origins[0]['frame_key']
    assert key == 'P4mm_000010'
    probe = frame.copy()
    probe.calc = gap_potential.calculator()
    expected = 1000 * (probe.get_potential_energy() - frame.get_potential_energy()) / 8
    assert energy_errors[0] == pytest.approx(expected, abs=1e-6)
    assert results['plot'].get_content('rb')[:4] == b'\x89PNG'


def test_bad_interpolation_inputs(gap_potential, label_code, task_code):
    trajectory = orm.TrajectoryData()
    trajectory.set_trajectory(['Sr', 'O'], np.zeros((2, 2, 3)) + [[0, 0, 0], [2, 2, 2]], cells=np.array([np.eye(3) * 4] * 2), pbc=[True] * 3)
    with pytest.raises(ValueError, match='which the potential does not know'):
        run_get_node(InterpolationBenchmarkWorkChain.get_builder_from_protocol(
            label_code, task_code, gap_potential, trajectories={'x': trajectory.store()}))
    with pytest.raises(ValueError, match='`fraction` must be in'):
        run_get_node(InterpolationBenchmarkWorkChain.get_builder_from_protocol(
            label_code, task_code, gap_potential, overrides={'parameters': {'fraction': 0}}, trajectories={'x': trajectory}))
