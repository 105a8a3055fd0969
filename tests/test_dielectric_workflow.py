"""DielectricResponseWorkChain: MD with the small GAP, dipoles from a small polarization model, the static tensor per
temperature recomputed from the stored dipoles, the spectrum and the plot; bad input refused before any job."""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_ferromlip.analysis.polarization_model import SparseDipoleModel
from aiida_ferromlip.analysis.soap import soap_hypers
from aiida_ferromlip.data.polarization import PolarizationModel
from aiida_ferromlip.materials import perovskite_polymorph
from aiida_ferromlip.materials.order_parameters import local_dipoles
from aiida_ferromlip.workflows.benchmarks.dielectric import DielectricResponseWorkChain

from .test_sample_select import md_code  # noqa: F401  (fixture)


@pytest.fixture(scope='module')
def dipole_model():
    rng = np.random.default_rng(5)
    cells = []
    for _ in range(30):
        atoms = perovskite_polymorph('Ba', 'Ti', 'Pm-3m')
        atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
        cells.append(atoms)
    return SparseDipoleModel(soap_hypers(4.5, 4, 3), [8, 22, 56], zeta=2).fit(
        cells, np.array([local_dipoles(a)[1].sum(axis=0) for a in cells]), 20, 1e-4)


def test_dielectric_response_with_a_small_gap(md_code, gap_potential, dipole_model):  # noqa: F811
    model = PolarizationModel.from_model(dipole_model).store()
    builder = DielectricResponseWorkChain.get_builder_from_protocol(
        md_code, gap_potential, model, protocol='fast', overrides={'analysis': {'curie_weiss_from_K': 250}})
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    summary = results['summary'].get_dict()
    assert [row['temperature_K'] for row in summary['temperatures']] == [300, 600] and summary['atoms'] == 40
    for row in summary['temperatures']:
        dipoles = results['arrays'].get_array(f'{row["key"]}_dipoles')
        assert row['frames'] == len(dipoles) == 11                      # 21 frames, the first 10 discarded
        # the fluctuation formula written out in SI here (e, Å, ε0, kB by value), not through the plugin's function:
        # ε_ab = δ_ab + (<M_a M_b> - <M_a><M_b>) / (ε0 V kB T)
        moments = dipoles * 1.602176634e-19 * 1e-10
        covariance = (moments - moments.mean(axis=0)).T @ (moments - moments.mean(axis=0)) / len(moments)
        expected = np.eye(3) + covariance / (8.8541878128e-12 * row['volume_A3'] * 1e-30 * 1.380649e-23
                                             * row['temperature_K'])
        np.testing.assert_allclose(row['eps_tensor'], expected, rtol=1e-6)
        assert row['eps_isotropic'] == pytest.approx(np.trace(expected) / 3, rel=1e-6)
    assert '2 temperatures at or above 250' in summary['curie_weiss_failed']
    chi = results['arrays'].get_array('spectrum_chi')
    assert chi.shape[1] == 2 and chi[0, 0] == pytest.approx(summary['temperatures'][1]['eps_isotropic'] - 1)
    assert results['plot'].get_content('rb')[:4] == b'\x89PNG'


def test_a_model_without_the_structure_species_is_refused(md_code, gap_potential, dipole_model):  # noqa: F811
    model = PolarizationModel.from_model(dipole_model)
    model.base.attributes.set('species', [8, 22])
    builder = DielectricResponseWorkChain.get_builder_from_protocol(md_code, gap_potential, model.store(),
                                                                    protocol='fast')
    with pytest.raises(ValueError, match=r'no environments of atomic number\(s\) \[56\]'):
        run_get_node(builder)


def _trajectory(frames, temperature):
    trajectory = orm.TrajectoryData()
    trajectory.set_trajectory(symbols=frames[0].get_chemical_symbols(), positions=np.array([a.positions for a in frames]),
                              cells=np.array([a.cell.array for a in frames]), pbc=[True] * 3,
                              stepids=np.arange(len(frames)) * 5, times=np.arange(len(frames)) * 0.01)
    trajectory.set_array('target_temperatures', np.full(len(frames), float(temperature)))
    return trajectory


def test_a_collapsed_crystal_is_reported_not_measured(dipole_model):
    from aiida_ferromlip.workflows.benchmarks.dielectric import dielectric_response

    rng = np.random.default_rng(6)
    intact, collapsed = [], []
    for k in range(8):
        atoms = perovskite_polymorph('Ba', 'Ti', 'Pm-3m', supercell=(2, 2, 2))
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        intact.append(atoms)
        squashed = atoms.copy()
        squashed.positions[1] = squashed.positions[0] + 0.02   # two atoms on top of each other
        collapsed.append(squashed)
    model = PolarizationModel.from_model(dipole_model).store()
    summary = dielectric_response(model, orm.Dict({'equilibration_fraction': 0.0}),
                                  T_0300K=_trajectory(intact, 300), T_0600K=_trajectory(collapsed, 600))['summary']
    assert summary['broken_at_K'] == [600.0]
    rows = {row['key']: row for row in summary['temperatures']}
    assert rows['T_0600K']['broken_frames'] == 8 and 'eps_isotropic' not in rows['T_0600K']
    assert rows['T_0300K']['eps_isotropic'] > 1 and summary['spectrum']['temperature_K'] == 300
