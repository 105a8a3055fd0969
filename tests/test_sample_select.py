"""Sampling (i-PI REMD, ramp MD) through the CalcJob and selection (sanity, decorrelation, FPS) with provenance."""

import io
import re

import numpy as np
import pytest
from ase.build import bulk
from aiida import orm
from aiida.engine import run_get_node

from aiida_ferromlip.analysis.selection import (
    autocorrelation_time,
    contiguous_segments,
    decorrelation,
    sanity_problem,
    select_diverse,
)
from aiida_ferromlip.analysis.soap import soap_hypers
from aiida_ferromlip.calculations.sample import SampleCalculation
from aiida_ferromlip.data.potential import GapPotential
from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.engines.md import exchange_statistics
from aiida_ferromlip.materials import batio3_polymorphs, perovskite_polymorph, rattled_strained
from aiida_ferromlip.workflows.select.candidates import select_candidates

from .conftest import executable


@pytest.fixture
def md_code(aiida_code_installed):
    return aiida_code_installed(label='ferromlip-md', default_calc_job_plugin='ferromlip.sample',
                                filepath_executable=executable('ferromlip-md'))


def r3m():
    return orm.StructureData(ase=batio3_polymorphs()['R3m'])


def sample(md_code, potential, structure, protocol='fast', parameters=None):
    builder = SampleCalculation.get_builder_from_protocol(md_code, potential, structure, protocol=protocol,
                                                          overrides={'parameters': parameters or {}})
    return run_get_node(builder)


def test_remd_four_replicas_exchange_and_give_one_trajectory_per_temperature(md_code, gap_potential):
    ladder = [100, 106, 112, 118]  # close rungs: a 40-atom cell exchanges often
    results, node = sample(md_code, gap_potential, r3m(),
                           parameters={'temperatures': ladder, 'steps': 40, 'stride': 4, 'exchange_stride': 1})
    assert node.is_finished_ok, node.exit_message
    trajectories = results['trajectories']
    assert sorted(trajectories) == ['T_0100K', 'T_0106K', 'T_0112K', 'T_0118K']
    for key, trajectory in trajectories.items():
        assert trajectory.numsteps == 11  # steps 0, 4, ..., 40
        assert trajectory.get_positions().shape == (11, 40, 3)
        np.testing.assert_allclose(trajectory.get_array('target_temperatures'), float(key[2:6]))
        assert np.isfinite(trajectory.get_array('energies')).all()
    exchange = results['statistics']['exchange']
    pairs = exchange['neighbour_pairs']
    assert len(pairs) == 3 and all(p['attempted'] > 0 for p in pairs)
    assert sum(p['accepted'] for p in pairs) > 0


@pytest.mark.parametrize('ensemble', ['npt', 'nst'])
def test_remd_with_a_barostat_moves_the_cell(md_code, gap_potential, ensemble):
    results, node = sample(md_code, gap_potential, r3m(),
                           parameters={'ensemble': ensemble, 'temperatures': [200, 300], 'steps': 20, 'stride': 10})
    assert node.is_finished_ok, node.exit_message
    cells = results['trajectories']['T_0300K'].get_cells()
    volumes = [abs(np.linalg.det(c)) for c in cells]
    assert len(volumes) == 3 and max(volumes) - min(volumes) > 0.1  # Å^3: the barostat acts
    if ensemble == 'nst':  # a fully flexible cell changes shape, not only size
        shape = cells[-1] / np.cbrt(volumes[-1]) - cells[0] / np.cbrt(volumes[0])
        assert np.abs(shape).max() > 1e-4


def test_temperature_ramp(md_code, gap_potential):
    results, node = sample(md_code, gap_potential, r3m(), 'minimalist_ramp',
                           {'steps': 30, 'stride': 10, 't_start': 10, 't_end': 300})
    assert node.is_finished_ok, node.exit_message
    trajectory = results['trajectories']['ramp']
    np.testing.assert_allclose(trajectory.get_array('target_temperatures'), [10, 106.667, 203.333, 300], rtol=1e-3)
    assert trajectory.get_array('stresses').shape == (4, 6)


def test_bad_sampling_inputs_fail_before_md(md_code, gap_potential):
    jobs_before = orm.QueryBuilder().append(orm.CalcJobNode).count()
    cases = {
        'at least two rungs': {'temperatures': [300]},
        'strictly increasing': {'temperatures': [300, 200, 100]},
        "species ['Pb'] are not supported": None,
    }
    for message, parameters in cases.items():
        structure = r3m() if parameters else orm.StructureData(ase=perovskite_polymorph('Pb', 'Ti', 'P4mm', supercell=(2, 2, 2)))
        with pytest.raises(ValueError, match=message.replace('[', r'\[').replace(']', r'\]')):
            sample(md_code, gap_potential, structure, parameters=parameters)
    no_stress = GapPotential(io.BytesIO(gap_potential.get_content('rb')), filename='gap.xml')
    no_stress.base.attributes.set_many({'species': ['Ba', 'O', 'Ti'], 'gives_stress': False})
    with pytest.raises(ValueError, match='needs stress'):
        sample(md_code, no_stress.store(), r3m(), parameters={'ensemble': 'npt'})
    # the reference labeller's model by name (the physics card's labeller MD): an unknown name, a species it lacks
    with pytest.raises(ValueError, match='unknown reference model `no-such-model`'):
        sample(md_code, orm.Str('no-such-model'), r3m(), parameters={'ensemble': 'nst'})
    with pytest.raises(ValueError, match=r"species \['Po'\] are not supported by the potential"):
        sample(md_code, orm.Str('7net-0'), orm.StructureData(ase=bulk('Po', 'sc', a=3.35)), parameters={})
    assert orm.QueryBuilder().append(orm.CalcJobNode).count() == jobs_before


def test_exchange_statistics_follow_the_swapped_ensembles():
    log = '\n'.join([
        ' @ PT:  SWAPPING replicas     1 and     0.',           # systems 0,1 now hold T1,T0
        ' @ PT:  SWAP REJECTED BETWEEN replicas     2 and     0.',  # system 0 holds T1: pair (1,2)
        ' @ PT:  SWAPPING replicas     2 and     0.',            # pair (1,2) accepted
    ])
    stats = exchange_statistics(log, 3)
    assert stats['neighbour_pairs'][0] == {'pair': [0, 1], 'attempted': 1, 'accepted': 1, 'acceptance': 1.0}
    assert stats['neighbour_pairs'][1] == {'pair': [1, 2], 'attempted': 2, 'accepted': 1, 'acceptance': 0.5}


def ar1(phi, n, rng):
    """AR(1) series x_i = phi x_(i-1) + noise, started in its stationary state: tau_int = (1 + phi) / (1 - phi)."""
    x = np.zeros(n)
    x[0] = rng.normal() / np.sqrt(1 - phi ** 2)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + rng.normal()
    return x


def test_autocorrelation_time_of_an_ar1_process():
    rng = np.random.default_rng(0)
    x = ar1(0.9, 20000, rng)
    assert autocorrelation_time(x) == pytest.approx(19.0, rel=0.25)
    assert autocorrelation_time(rng.normal(size=5000)) == pytest.approx(1.0, abs=0.3)


@pytest.mark.parametrize('tau, frames', [(99, 100), (399, 40), (19, 300)])
def test_short_series_keep_no_more_frames_than_they_hold_independent_ones(tau, frames):
    """AR(1) series with a known tau shorter than many times tau: the kept frames must not outnumber the
    independent frames the series holds, ceil(frames / tau) (median over 20 series). The windowed estimate alone
    (the old selection) kept 12 of 100 frames at tau 99 and 10 of 40 at tau 399."""
    rng = np.random.default_rng(1)
    phi = (tau - 1) / (tau + 1)
    kept = [len(decorrelation(ar1(phi, frames, rng))['kept']) for _ in range(20)]
    assert np.median(kept) <= np.ceil(frames / tau)


def test_long_series_are_decorrelated_at_their_autocorrelation_time():
    """Long enough to tell (> 50 tau): about one frame per tau is kept, neither far more nor far fewer."""
    rng = np.random.default_rng(2)
    result = decorrelation(ar1(0.5, 3000, rng))  # tau = 3
    assert result['reliable'] and result['tau'] == pytest.approx(3.0, rel=0.25)
    assert 3000 / 3 * 0.7 <= len(result['kept']) <= 3000 / 3 * 1.3
    assert np.diff(result['kept']).min() >= result['stride']


def test_the_autocorrelation_never_pairs_frames_across_a_rejected_one():
    """Two white-noise runs at different energies on either side of a rejected frame: taken as one series (the old
    selection) the step looks like a correlation time of hundreds of frames; run by run, each is white noise."""
    rng = np.random.default_rng(3)
    series = np.concatenate([rng.normal(size=200) + 5.0, [0.0], rng.normal(size=200) - 5.0])
    usable = [i for i in range(len(series)) if i != 200]
    assert [len(run) for run in contiguous_segments(usable)] == [200, 200]
    assert autocorrelation_time(series[usable]) > 50
    assert autocorrelation_time(series, contiguous_segments(usable)) == pytest.approx(1.0, abs=0.3)
    kept = decorrelation(series, usable, min_spans=50)['kept']
    assert 200 not in kept and len(kept) >= 300


def test_sanity_filter_flags_blown_up_frames():
    atoms = perovskite_polymorph('Ba', 'Ti', 'P4mm')
    assert sanity_problem(atoms) is None
    crushed = atoms.copy()
    crushed.positions[1] = crushed.positions[0] + [0.3, 0, 0]
    assert 'apart' in sanity_problem(crushed)
    assert 'force component' in sanity_problem(atoms, forces=np.full((5, 3), 50.0))
    assert 'temperature' in sanity_problem(atoms, temperature=2000, target_temperature=300)
    assert 'above the trajectory median' in sanity_problem(atoms, energy_per_atom=-5.0, reference_energy_per_atom=-8.0)


def test_fps_picks_distinct_structures_first_and_never_a_training_frame():
    hypers = soap_hypers(4.5, 6, 4)
    cubic = rattled_strained(batio3_polymorphs()['Pm-3m'], 5, rattle=0.01, seed=1)
    rhombohedral = rattled_strained(batio3_polymorphs()['R3m'], 5, rattle=0.01, seed=2)
    # The training set holds cubic frames: the first picks are rhombohedral ones.
    picked, distances = select_diverse(cubic + rhombohedral, 2, hypers, existing=cubic[:2])
    assert all(i >= 5 for i in picked)
    assert np.all(np.diff(distances) <= 1e-12)
    # Candidates identical to training frames are never picked, even when more are asked for.
    picked, _ = select_diverse(cubic[:2] + rhombohedral[:1], 3, hypers, existing=cubic[:2])
    assert picked.tolist() == [2]


def synthetic_trajectory(frames, energies, temperatures=None):
    trajectory = orm.TrajectoryData()
    trajectory.set_trajectory(symbols=frames[0].get_chemical_symbols(), positions=np.array([f.positions for f in frames]),
                              cells=np.array([f.cell.array for f in frames]), stepids=np.arange(len(frames)) * 10,
                              pbc=[True, True, True])
    trajectory.set_array('energies', np.asarray(energies, dtype=float))
    trajectory.set_array('forces', np.zeros((len(frames), len(frames[0]), 3)))
    trajectory.set_array('temperatures', np.asarray(temperatures if temperatures is not None else [300.0] * len(frames)))
    trajectory.set_array('target_temperatures', np.full(len(frames), 300.0))
    return trajectory.store()


def test_select_candidates_calcfunction(reference_frames):
    rng = np.random.default_rng(3)
    frames = rattled_strained(batio3_polymorphs()['P4mm'], 12, rattle=0.05, seed=5)
    frames[7].positions[3] = frames[7].positions[4] + [0.2, 0, 0]      # blown-up frame
    energies = -320 + rng.normal(scale=0.05, size=12)
    temperatures = [300.0] * 12
    temperatures[9] = 5000.0                                           # thermostat runaway
    trajectory = synthetic_trajectory(frames, energies, temperatures)
    training_set = TrainingSet(frames=reference_frames).store()
    results = select_candidates(parameters=orm.Dict({'num_select': 4, 'decorrelate': False,
                                                     'equilibration_fraction': 0.0}),
                                training_set=training_set, md=trajectory)
    report = results['report'].get_dict()
    assert report['num_sampled'] == 12 and report['num_rejected'] == 2
    assert set(report['trajectories']['md']['rejected_reasons']) == {'7', '9'}
    selected = [results[k] for k in sorted(results) if k.startswith('selected_')]
    assert len(selected) == 4 and report['num_selected'] == 4
    sources = [s.base.attributes.get('ferromlip_source') for s in selected]
    assert {s['frame_index'] for s in sources}.isdisjoint({7, 9})
    assert all(s['trajectory_uuid'] == trajectory.uuid for s in sources)
    creator = selected[0].creator
    assert creator.process_label == 'select_candidates'
    assert {link.node.uuid for link in creator.base.links.get_incoming().all()} >= {trajectory.uuid, training_set.uuid}
    assert results['plot'].get_content('rb')[:4] == b'\x89PNG'
    with pytest.raises(ValueError, match='unknown selection parameters'):
        select_candidates(parameters=orm.Dict({'n_select': 3}), md=trajectory)


def test_independent_runs_leave_out_the_exchange_move():
    from aiida_ferromlip.engines.md import ipi_input

    base = {'mode': 'remd', 'temperatures': [100, 200], 'steps': 10, 'ensemble': 'nst'}
    assert "<smotion mode='remd'>" in ipi_input(base, 'socket')
    independent = ipi_input({**base, 'exchange': False}, 'socket')
    assert '<smotion' not in independent and independent.count('<instance>') == 2
    from aiida_ferromlip.calculations.sample import parameter_problems

    class Stress:
        gives_stress = True

    assert parameter_problems({**base, 'temperatures': [300], 'exchange': False}, Stress()) == []
    assert 'at least two rungs' in parameter_problems({**base, 'temperatures': [300]}, Stress())[0]
    assert 'true or false' in parameter_problems({**base, 'exchange': 'no'}, Stress())[0]


@pytest.mark.timeout(600)  # before the fix, i-PI waited for its clients for ever
def test_a_lost_socket_client_ends_the_job_with_its_own_exit_code(md_code, tmp_path):
    """A potential file no client can load: every socket client dies at start while i-PI waits for them. The job
    must end (exit 311, naming the client and its error), not wait for ever nor report an MD failure."""
    broken = tmp_path / 'gap.xml'
    broken.write_text('<GAP_broken>this is not a GAP</GAP_broken>\n')
    potential = GapPotential(str(broken))
    potential.base.attributes.set_many({'species': ['Ba', 'O', 'Ti'], 'gives_stress': True, 'cutoff': 3.8})
    _, node = sample(md_code, potential.store(), r3m(), parameters={'steps': 10})
    assert node.exit_status == SampleCalculation.exit_codes.ERROR_CLIENT_LOST.status, node.exit_message
    # every client dies; which one the watcher sees first is a race, so the message names any one of them
    assert re.search(r'socket client \d of 2 exited', node.exit_message), node.exit_message
    assert 'could not initialise potential' in node.exit_message


def test_the_ramp_refuses_a_potential_without_stress(tmp_path, monkeypatch):
    """Every ramp frame carries the potential's stress; a potential that has none ends the run with that said."""
    from ase.calculators.calculator import Calculator, all_changes
    from ase.calculators.emt import EMT
    from ase.io import write

    from aiida_ferromlip.engines import md, potentials

    class NoStress(Calculator):
        implemented_properties = ['energy', 'forces']

        def calculate(self, atoms=None, properties=('energy',), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            reference = EMT()
            self.results = {'energy': reference.get_potential_energy(atoms), 'forces': reference.get_forces(atoms)}

    monkeypatch.chdir(tmp_path)
    write(md.STRUCTURE_FILE, bulk('Cu', cubic=True), format='extxyz')
    monkeypatch.setattr(potentials, 'calculator_from_spec', lambda spec: NoStress())
    with pytest.raises(md.MissingStress, match='gave no stress at step 0'):
        md.run_ramp({'steps': 4, 'stride': 2}, {})


@pytest.mark.parametrize('protocol', ['batio3_gap_nvt', 'batio3_gap_npt'])
def test_batio3_gap_sampling_uses_the_papers_time_constants(protocol):
    """The BaTiO3 SOAP-GAP paper's Methods: 'The characteristic times of the barostat, the SVR thermostat and the
    MD timestep are 1 ps, 10 fs, and 2 fs respectively.' Read back from the i-PI input the protocol produces."""
    import xml.etree.ElementTree as ElementTree

    from aiida_ferromlip.engines.md import ipi_input

    parameters = SampleCalculation.get_protocol_inputs(protocol)['parameters']
    root = ElementTree.fromstring(ipi_input({**parameters, 'ensemble': 'nst'}, 'test').replace('CELL', '[1,0,0,0,1,0,0,0,1]'))
    dynamics = root.find('.//dynamics')
    assert float(dynamics.find('timestep').text) == 2.0 and dynamics.find('timestep').get('units') == 'femtosecond'
    thermostat = dynamics.find('thermostat')
    assert thermostat.get('mode') == 'svr' and float(thermostat.find('tau').text) == 10.0
    assert float(dynamics.find('barostat/tau').text) == 1000.0
    assert dynamics.find('barostat/tau').get('units') == 'femtosecond'
