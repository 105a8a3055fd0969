"""Committee uncertainty and the selectors behind one contract (random, fps, uncertainty, fps+uncertainty)."""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.build import bulk
from ase.calculators.lj import LennardJones

from aiida_ferromlip.analysis.selection import calibrate_trust, select_frames, trust_bands
from aiida_ferromlip.analysis.soap import soap_hypers
from aiida_ferromlip.data.potential import CommitteePotential, committee_of
from aiida_ferromlip.engines.potentials import CommitteeCalculator
from aiida_ferromlip.workflows.loop.active_learning import ActiveLearningWorkChain, prediction_errors

from .test_active_learning import builder_for, codes, starts  # noqa: F401 (fixture)


def rattled_copper(seed=0):
    atoms = bulk('Cu', 'fcc', a=3.6, cubic=True).repeat(2)
    atoms.rattle(0.1, seed=seed)
    return atoms


def test_committee_mean_and_deviation_match_their_closed_form():
    """Two members: the mean force is (F1 + F2) / 2 and each atom's deviation |F1 - F2| / 2 (RMS distance of two
    vectors from their midpoint); the energy deviation is |E1 - E2| / 2 per atom."""
    atoms = rattled_copper()
    members = [LennardJones(sigma=2.30, epsilon=0.40, rc=6.0), LennardJones(sigma=2.35, epsilon=0.38, rc=6.0)]
    forces, energies = [], []
    for member in members:
        copy = atoms.copy()
        copy.calc = member
        forces.append(copy.get_forces())
        energies.append(copy.get_potential_energy())
    committee = CommitteeCalculator(members)
    atoms.calc = committee
    assert np.allclose(atoms.get_forces(), (forces[0] + forces[1]) / 2)
    assert atoms.get_potential_energy() == pytest.approx((energies[0] + energies[1]) / 2)
    expected = np.linalg.norm(forces[0] - forces[1], axis=1) / 2
    assert np.allclose(committee.results['force_deviations'], expected)
    assert committee.results['max_force_deviation'] == pytest.approx(expected.max())
    assert committee.results['energy_deviation'] == pytest.approx(abs(energies[0] - energies[1]) / 2 / len(atoms))
    assert expected.max() > 1e-3  # the two members really differ here
    with pytest.raises(ValueError, match='at least two members'):
        CommitteeCalculator(members[:1])


def test_selectors_pick_inside_the_trust_band():
    candidates = [rattled_copper(seed) for seed in range(12)]
    deviations = np.linspace(0.0, 1.1, 12)     # 0, 0.1, ..., 1.1
    trust = (0.25, 0.75)                        # band: 0.3, 0.4, 0.5, 0.6, 0.7
    assert trust_bands(deviations, *trust).tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2]
    picked, scores = select_frames('uncertainty', candidates, 3, deviations=deviations, trust=trust, seed=1)
    assert len(picked) == 3 and set(picked) <= {3, 4, 5, 6, 7}
    assert np.allclose(scores, deviations[picked])
    hypers = soap_hypers(4.0, 4, 3, 0.5)
    picked, _ = select_frames('fps+uncertainty', candidates, 10, hypers=hypers, deviations=deviations, trust=trust)
    assert sorted(picked) == [3, 4, 5, 6, 7]   # every frame of the band, none outside it
    picked, _ = select_frames('random', candidates, 4, seed=3)
    again, _ = select_frames('random', candidates, 4, seed=3)
    assert len(set(picked)) == 4 and picked.tolist() == again.tolist()
    with pytest.raises(ValueError, match='trust levels must satisfy'):
        trust_bands(deviations, 0.5, 0.2)
    with pytest.raises(ValueError, match='unknown selector'):
        select_frames('best', candidates, 2)
    with pytest.raises(ValueError, match='needs uncertainty scores'):
        select_frames('uncertainty', candidates, 2)


def test_trust_levels_are_calibrated_on_the_true_errors():
    """A committee that underestimates the error three times: the levels on its deviation are the targets / 3."""
    rng = np.random.default_rng(0)
    deviations = rng.uniform(0.02, 0.3, 20)
    errors = 3.0 * deviations * rng.uniform(0.9, 1.1, 20)
    levels = calibrate_trust(deviations, errors, (0.15, 1.0))
    assert levels['calibrated'] and levels['factor'] == pytest.approx(3.0, rel=0.05)
    assert levels['lower'] == pytest.approx(0.05, rel=0.05) and levels['upper'] == pytest.approx(1 / 3, rel=0.05)
    few = calibrate_trust(deviations[:3], errors[:3], (0.15, 1.0))
    assert not few['calibrated'] and few['lower'] == 0.15 and few['upper'] == 1.0


def test_a_committee_node_is_refused_for_one_member(gap_potential):
    with pytest.raises(ValueError, match='at least two members'):
        committee_of(member_00=gap_potential)


def picks_and_their_scores(links: dict, expected: int) -> list[tuple[dict, dict]]:
    """``(source, scoring row)`` of each structure the first selection picked (``links``: the loop's outgoing)."""
    rows = links['score_000'].outputs.results['rows']
    selection = links['select_000']
    picked = [selection.outputs[k] for k in selection.outputs if k.startswith('selected_')]
    assert len(picked) == expected
    pairs = []
    for structure in picked:
        source = structure.base.attributes.get('ferromlip_source')
        pairs.append((source, rows[f'{source["trajectory_key"]}:{source["frame_index"]:05d}']))
    return pairs


def test_the_loop_selects_by_committee_uncertainty(codes, task_code):  # noqa: F811
    builder = builder_for(codes, starts('R3m'),
                          parameters={'max_iterations': 1, 'seed_frames_per_structure': 3,
                                      'committee': {'size': 2, 'validation_fraction': 0.34}},
                          select_parameters={'num_select': 2, 'selector': 'uncertainty', 'trust_errors': [0.0, 1e3]})
    builder.task_code = task_code
    results, node = run_get_node(builder)
    assert node.exit_status == ActiveLearningWorkChain.exit_codes.STOPPED_BUDGET_EXHAUSTED.status, node.exit_message
    links = {link.link_label: link.node for link in node.base.links.get_outgoing().all()}
    committee = links['committee_000'].outputs.result
    assert isinstance(committee, CommitteePotential) and committee.size == 2
    member = links['fit_000_member_01']
    assert member.inputs.gap_fit.parameters['seed'] == 1  # another split and other sparse points than member 0
    for source, row in picks_and_their_scores(links, 2):
        assert source['selector'] == 'uncertainty'
        assert source['max_force_deviation'] == pytest.approx(row['max_force_deviation'])
    report = ' '.join(log.message for log in orm.Log.collection.get_logs_for(node))
    assert 'selected 2 by uncertainty' in report and 'trust levels' in report and 'uncalibrated' in report
    pairs = links['deviation_errors_000'].outputs.result
    assert len(pairs['deviations']) == 2 and all(e > 0 for e in pairs['errors'])
    assert results['trust_plot'].get_content('rb')[:4] == b'\x89PNG'


def test_an_uncertainty_selector_without_a_task_code_or_committee_is_refused(codes):  # noqa: F811
    builder = builder_for(codes, starts('R3m'), select_parameters={'selector': 'uncertainty'})
    with pytest.raises(ValueError, match='give `task_code`'):
        run_get_node(builder)
    builder = builder_for(codes, starts('R3m'), parameters={'committee': {'size': 1, 'validation_fraction': 0.2}},
                          select_parameters={'selector': 'fps+uncertainty'})
    with pytest.raises(ValueError, match='at least two members'):
        run_get_node(builder)
    with pytest.raises(ValueError, match='unknown selector'):
        run_get_node(builder_for(codes, starts('R3m'), select_parameters={'selector': 'best'}))
    with pytest.raises(ValueError, match='trust_errors'):
        run_get_node(builder_for(codes, starts('R3m'), select_parameters={'trust_errors': [1.0, 0.5]}))


def test_the_task_engine_reports_a_committees_deviation_and_can_skip_the_stress():
    from aiida_ferromlip.engines.atoms_task import run_task

    frames = [rattled_copper(seed) for seed in range(2)]
    committee = CommitteeCalculator([LennardJones(sigma=2.30, epsilon=0.40, rc=6.0),
                                     LennardJones(sigma=2.35, epsilon=0.38, rc=6.0)])
    outputs, rows, failures, _, _ = run_task(frames, committee, {'task': 'energies', 'stress': False})
    assert not failures and len(rows) == 2
    for atoms, row in zip(outputs, rows.values()):
        check = atoms.copy()
        check.calc = committee
        check.get_forces()
        assert row['max_force_deviation'] == pytest.approx(committee.results['max_force_deviation'])
        assert 'stress' not in atoms.calc.results
    outputs, _, _, _, _ = run_task(frames[:1], committee, {'task': 'energies'})
    assert outputs[0].calc.results['stress'].shape == (6,)


def test_committee_members_differ_from_the_loops_fit_in_seed_and_split():
    """Member k: the seed moved on by k (GAP: another validation split and other sparse points; NequIP/Allegro: also
    other initial weights, the config's seed), the committee's validation fraction; nothing else changes."""
    from aiida_ferromlip.calculations.gap_fit import split_indices
    from aiida_ferromlip.workflows.fit.models import MODELS

    committee = {'size': 4, 'validation_fraction': 0.25}
    gap = {'parameters': orm.Dict({'seed': 0, 'validation_fraction': 0.1, 'n_sparse': 100}), 'code': 'gap-code'}
    member = MODELS['gap'].member_inputs(gap, 2, committee)
    assert member['parameters'].get_dict() == {'seed': 2, 'validation_fraction': 0.25, 'n_sparse': 100}
    assert member['code'] == 'gap-code' and gap['parameters']['seed'] == 0  # the loop's own inputs untouched
    splits = [tuple(split_indices(40, 0.25, seed)[0]) for seed in (1, 2, 3)]
    assert len(set(splits)) == 3  # three members, three different training subsets
    nequip = {'parameters': orm.Dict({'seed': 5}), 'config': orm.Dict({'seed': 5, 'cutoff_radius': 5.0})}
    member = MODELS['nequip'].member_inputs(nequip, 1, committee)
    assert member['config'].get_dict() == {'seed': 6, 'cutoff_radius': 5.0} and member['parameters']['seed'] == 6


def test_a_gap_calculator_gives_the_stress_in_the_same_call_as_forces(fitted_gap_xml, reference_frames):
    """ASE asks for energy, forces and stress one after another (i-PI's NST clients every step); quippy evaluates
    only the properties of its call, so without stress among the defaults the stress is a second full evaluation.
    One call must return all three, with the numbers a plain quippy Potential gives."""
    from quippy.potential import Potential

    from aiida_ferromlip.engines.potentials import gap_calculator

    atoms = reference_frames[0].copy()
    calculator, plain = gap_calculator(str(fitted_gap_xml)), Potential(param_filename=str(fitted_gap_xml))
    calls = []
    original = calculator.calculate
    calculator.calculate = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
    atoms.calc = calculator
    energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    assert len(calls) == 1
    reference = atoms.copy()
    reference.calc = plain
    assert energy == pytest.approx(reference.get_potential_energy(), abs=1e-9)
    assert np.abs(forces - reference.get_forces()).max() < 1e-9
    assert np.abs(stress - reference.get_stress()).max() < 1e-12


def test_the_gaps_own_variance_grows_away_from_its_training_frames(fitted_gap_xml, reference_frames):
    """quippy's predictive standard deviation (``GapVarianceCalculator``): small on a frame the GAP was fitted on,
    larger on the same cell rattled far beyond anything in its training set (0.25 Å against 0.06 Å), and the same
    energy and forces as the GAP without it; the task engine puts it into each row."""
    from aiida_ferromlip.engines.atoms_task import run_task, task_settings
    from aiida_ferromlip.engines.potentials import GapVarianceCalculator, calculator_from_spec, gap_calculator

    calculator = GapVarianceCalculator(str(fitted_gap_xml))
    known = reference_frames[0].copy()
    unknown = known.copy()
    unknown.rattle(0.25, seed=7)
    outputs, rows, failures, _, _ = run_task([known, unknown], calculator, {'task': 'energies',
                                                                            'uncertainty': 'gap_variance'})
    assert not failures
    trained, far = (row['max_local_energy_std'] for row in rows.values())
    assert 0 <= trained and far > 3 * trained, (trained, far)
    plain = known.copy()
    plain.calc = gap_calculator(str(fitted_gap_xml))
    assert outputs[0].get_potential_energy() == pytest.approx(plain.get_potential_energy(), abs=1e-9)
    np.testing.assert_allclose(outputs[0].get_forces(), plain.get_forces(), atol=1e-9)

    with pytest.raises(ValueError, match='needs a GAP'):
        calculator_from_spec({'kind': 'nequip', 'file': 'x.pt2'}, gap_variance=True)
    with pytest.raises(ValueError, match='unknown uncertainty'):
        task_settings({'task': 'energies', 'uncertainty': 'ensemble'})


def test_the_loop_selects_by_the_gaps_own_variance_without_a_committee(codes, task_code):  # noqa: F811
    builder = builder_for(codes, starts('R3m'), parameters={'max_iterations': 1, 'seed_frames_per_structure': 3},
                          select_parameters={'num_select': 2, 'selector': 'uncertainty', 'uncertainty': 'gap_variance',
                                             'trust_errors': [0.0, 1e3]})
    builder.task_code = task_code
    results, node = run_get_node(builder)
    assert node.exit_status == ActiveLearningWorkChain.exit_codes.STOPPED_BUDGET_EXHAUSTED.status, node.exit_message
    links = {link.link_label: link.node for link in node.base.links.get_outgoing().all()}
    assert not any(label.startswith('committee_') or '_member_' in label for label in links)  # nothing extra fitted
    score = links['score_000']
    assert score.inputs.model.uuid == links['fit_000'].outputs.potential.uuid
    for source, row in picks_and_their_scores(links, 2):
        assert source['max_local_energy_std'] == pytest.approx(row['max_local_energy_std'])
        assert source['max_local_energy_std'] > 0
    report = ' '.join(log.message for log in orm.Log.collection.get_logs_for(node))
    assert "the GAP's predictive std" in report and 'selected 2 by uncertainty' in report
    pairs = links['deviation_errors_000'].outputs.result
    assert len(pairs['deviations']) == 2 and all(e > 0 for e in pairs['errors'])
    # The batch's errors come from the potential's task job beside the labelling, paired by key, and are what the
    # potential evaluated here gives on the same labels (the same model: float noise only).
    predict, errors = links['predict_000'], links['errors_000']
    assert errors.process_label == 'batch_errors' and predict.inputs.model.uuid == score.inputs.model.uuid
    batch = links['label_000'].outputs.training_set
    direct = prediction_errors(score.inputs.model, batch).get_dict()
    for key in ('energy_per_fu_meV_rmse', 'forces_meV_per_A_rmse', 'stress_kbar_rmse'):
        assert errors.outputs.result[key] == pytest.approx(direct[key], rel=1e-6, abs=1e-6), key
    assert errors.outputs.result['num_frames'] == len(batch) == 2


def test_the_gaps_own_variance_is_refused_for_another_model_and_unknown_sources(codes):  # noqa: F811
    builder = builder_for(codes, starts('R3m'), select_parameters={'selector': 'uncertainty',
                                                                    'uncertainty': 'dropout'})
    with pytest.raises(ValueError, match='unknown uncertainty `dropout`'):
        run_get_node(builder)
    builder = builder_for(codes, starts('R3m'), select_parameters={'selector': 'uncertainty',
                                                                    'uncertainty': 'gap_variance'})
    builder.fit.model = orm.Str('nequip')
    with pytest.raises(ValueError, match='predictive variance of a GAP'):
        run_get_node(builder)
