"""GAP fitting through the CalcJob: a real gap_fit on reference-labelled BaTiO3, its metrics, errors and memory plan."""

import copy
import os

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from aiida_ferromlip.calculations.atoms_task import AtomsTaskCalculation
from aiida_ferromlip.calculations.gap_fit import GapFitCalculation, split_indices
from aiida_ferromlip.data.potential import GapPotential
from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.engines import gap as engine
from aiida_ferromlip.materials import batio3_polymorphs, rattled_strained
from aiida_ferromlip.parsers.gap_fit import classify_failure
from aiida_ferromlip.provenance import labelling_calculations

from .conftest import executable


@pytest.fixture
def gap_code(aiida_code_installed):
    return aiida_code_installed(label='ferromlip-gap', default_calc_job_plugin='ferromlip.gap_fit',
                                filepath_executable=executable('ferromlip-gap'))


@pytest.fixture
def training_set(reference_frames):
    return TrainingSet(frames=reference_frames, origins=[{'labeller': 'sevennet:7net-0'}] * len(reference_frames)).store()


def fit(gap_code, training_set, protocol='fast', overrides=None):
    builder = GapFitCalculation.get_builder_from_protocol(gap_code, training_set, protocol=protocol,
                                                          overrides=overrides)
    return run_get_node(builder)


def test_fit_predicts_out_of_sample(gap_code, task_code, training_set, sevennet):
    results, node = fit(gap_code, training_set)
    assert node.is_finished_ok, node.exit_message
    potential = results['potential']
    assert isinstance(potential, GapPotential)
    assert potential.species == ['Ba', 'O', 'Ti']
    assert potential.base.attributes.get('training_set_uuid') == training_set.uuid
    assert potential.base.attributes.get('peak_rss_bytes') > 0
    assert '<GAP_params' in potential.get_content()

    metrics = results['metrics'].get_dict()
    assert metrics['num_frames'] == 2  # 10 % of 16, rounded
    assert 0 < metrics['forces_meV_per_A_rmse'] < 0.6 * metrics['forces_reference_rms_meV_per_A']
    assert results['parity_plot'].get_content('rb')[:8] == b'\x89PNG\r\n\x1a\n'
    plan = results['fit_report']['memory_plan']
    assert plan['fits_budget'] and plan['virial_fraction'] == 1.0

    # A structure the fit never saw: a differently rattled tetragonal cell.
    unseen = rattled_strained(batio3_polymorphs()['P4mm'], 1, rattle=0.06, seed=99)[0]
    reference = unseen.copy()
    reference.calc = sevennet
    predicted = unseen.copy()
    predicted.calc = potential.calculator()
    e_ref, e_gap = reference.get_potential_energy(), predicted.get_potential_energy()
    assert abs(e_gap - e_ref) / 8 < 0.05  # eV per formula unit
    f_ref, f_gap = reference.get_forces(), predicted.get_forces()
    assert np.sqrt(np.mean((f_gap - f_ref) ** 2)) < 0.5 * np.sqrt(np.mean(f_ref**2))
    assert predicted.get_stress().shape == (6,)

    # Labels the fitted potential predicts are no labelling calculation's: the provenance walk must not name the
    # GapFitCalculation that created the potential (it did before POTENTIAL_TYPES inputs were excluded).
    predictions = run_get_node(AtomsTaskCalculation.get_builder_for(
        task_code, potential, {'unseen': orm.StructureData(ase=unseen)}, {'task': 'energies'}))[0]['labels']
    assert predictions.get_frame(0).get_potential_energy() == pytest.approx(e_gap, abs=1e-6)
    assert potential.creator.process_label == 'GapFitCalculation'
    assert labelling_calculations(predictions) == []
    # the same job with the reference model is labelling work
    references = run_get_node(AtomsTaskCalculation.get_builder_for(
        task_code, orm.Str('7net-0'), {'unseen': orm.StructureData(ase=unseen)}, {'task': 'energies'}))[0]['labels']
    assert [node.process_label for node in labelling_calculations(references)] == ['AtomsTaskCalculation']


def test_identical_fits_have_the_same_content_hash(gap_code, training_set):
    first, _ = fit(gap_code, training_set)
    second, _ = fit(gap_code, training_set)
    assert first['potential'].content_hash == second['potential'].content_hash
    assert first['potential'].uuid != second['potential'].uuid
    other, _ = fit(gap_code, training_set, overrides={'parameters': {'seed': 7}})
    assert other['potential'].content_hash != first['potential'].content_hash


def test_batio3_gap_preset_with_fps_sparse_points(gap_code, training_set):
    descriptors = copy.deepcopy(GapFitCalculation.get_protocol_inputs('batio3_gap')['parameters']['descriptors'])
    descriptors[1]['n_sparse'] = {'default': 20, 'O': 40}
    descriptors[2]['n_sparse'] = 10  # the 3.8 Å SOAP beside the paper's: 10 per species (add_species)
    results, node = fit(gap_code, training_set, 'batio3_gap', {'parameters': {'descriptors': descriptors}})
    assert node.is_finished_ok, node.exit_message
    report = results['fit_report'].get_dict()
    assert 'sparse_method=index_file' in report['command']
    assert set(report['fps_last_distance']) == {'1:Ba', '1:Ti', '1:O'}
    assert results['potential'].base.attributes.get('sparse_points') == [20, 20, 40, 20, 10]


def test_overrides_never_mutate_the_protocol():
    before = GapFitCalculation.get_protocol_inputs('batio3_gap')
    GapFitCalculation.get_protocol_inputs('batio3_gap', {'parameters': {'max_memory_gb': 1, 'seed': 3}})
    assert GapFitCalculation.get_protocol_inputs('batio3_gap') == before
    assert before['parameters']['max_memory_gb'] == 16


def single_species_set():
    atoms = Atoms('Ti2', scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=np.eye(3) * 8.0, pbc=True)
    atoms.calc = SinglePointCalculator(atoms, energy=-10.0, forces=np.zeros((2, 3)), stress=np.zeros(6))
    return TrainingSet(frames=[atoms] * 3).store()


def test_bad_inputs_fail_before_the_job(gap_code, training_set):
    jobs_before = orm.QueryBuilder().append(orm.CalcJobNode).count()
    with pytest.raises(ValueError, match='multi-species'):
        fit(gap_code, single_species_set(), 'batio3_gap')
    with pytest.raises(ValueError, match='the TrainingSet is empty'):
        fit(gap_code, TrainingSet(frames=[]).store())
    with pytest.raises(ValueError, match='exceeds half the shortest cell height'):
        descriptors = [{'type': 'soap', 'cutoff': 6.0, 'n_max': 4, 'l_max': 3, 'atom_sigma': 0.5, 'zeta': 4,
                        'delta': 0.2, 'covariance_type': 'dot_product', 'n_sparse': 10}]
        fit(gap_code, training_set, overrides={'parameters': {'descriptors': descriptors}})
    with pytest.raises(ValueError, match='asks for 500 sparse environments around Ba'):
        fit(gap_code, training_set, 'batio3_gap', {'parameters': {'descriptors': [
            {'type': 'soap', 'cutoff': 5.5, 'n_max': 4, 'l_max': 3, 'zeta': 4, 'delta': 0.2, 'per_species': True,
             'covariance_type': 'dot_product', 'n_sparse': 500, 'sparse_method': 'fps'}]}})
    with pytest.raises(ValueError, match='default_sigma'):
        fit(gap_code, training_set, overrides={'parameters': {'default_sigma': [0.01, 0.1]}})
    assert orm.QueryBuilder().append(orm.CalcJobNode).count() == jobs_before


def test_gap_fit_errors_become_exit_codes(gap_code, training_set):
    descriptors = copy.deepcopy(GapFitCalculation.get_protocol_inputs('fast')['parameters']['descriptors'])
    descriptors[0]['covariance_type'] = 'banana'
    _, node = fit(gap_code, training_set, overrides={'parameters': {'descriptors': descriptors}})
    assert node.exit_status == GapFitCalculation.exit_codes.ERROR_BAD_PARAMETERS.status, node.exit_message
    assert 'unknown covariance typebanana' in node.exit_message

    _, node = fit(gap_code, training_set, overrides={'parameters': {'max_memory_gb': 0.01}})
    assert node.exit_status == GapFitCalculation.exit_codes.ERROR_MEMORY_BUDGET.status, node.exit_message
    assert 'budget' in node.exit_message


@pytest.mark.parametrize('log, returncode, expected', [
    ('SYSTEM ABORT: main program failed to parse gap string (1)=\'soap bogus=3\'', 1, 'ERROR_BAD_PARAMETERS'),
    ('Atom species 8 present in teaching XYZ, but not found corresponding isolated representative\n'
     'SYSTEM ABORT: Determination of e0 was requested to be based on isolated atom energies', 1,
     'ERROR_MISSING_SPECIES'),
    ('SYSTEM ABORT: LA_Matrix_Factorise: cannot factorise, error: 12', 1, 'ERROR_SINGULAR_MATRIX'),
    ('Fortran runtime error: Allocation would exceed memory limit', 1, 'ERROR_OUT_OF_MEMORY'),
    ('', -9, 'ERROR_OUT_OF_MEMORY'),
    # the quippy wheel's gap_fit is a Python wrapper that exits with its killed child's -9: status 247
    ('Descriptor 10 :: xPrime 856 270642 memory 1853 MB', 247, 'ERROR_OUT_OF_MEMORY'),
    ('something unexpected', 1, 'ERROR_GAP_FIT_FAILED'),
])
def test_classify_failure(log, returncode, expected):
    assert classify_failure(log, returncode)[0] == expected


def test_memory_plan_drops_virials_to_meet_the_budget(reference_frames, tmp_path, monkeypatch):
    """With a budget between gap_fit's estimates with and without virials, only some frames keep theirs."""
    from aiida_ferromlip.calculations.gap_fit import gap_fit_frames

    monkeypatch.chdir(tmp_path)
    frames = gap_fit_frames(TrainingSet(frames=reference_frames), range(len(reference_frames)))
    parameters = GapFitCalculation.get_protocol_inputs('fast')['parameters']
    species = [56, 22, 8]
    full = engine.dryrun_peak(parameters, species, {}, frames, 1.0, 0)
    none = engine.dryrun_peak(parameters, species, {}, frames, 0.0, 0)
    assert full > none
    budget = (full + none) / 2
    plan = engine.plan_memory({**parameters, 'max_memory_gb': budget / 1024**3}, species, {}, frames)
    assert plan['fits_budget'] and 0 < plan['virial_fraction'] < 1
    assert plan['estimated_peak_bytes'] <= budget
    kept = engine.write_fit_file(frames, 'check.extxyz', plan['virial_fraction'], 0)
    assert len(kept) == round(plan['virial_fraction'] * len(frames))
    assert os.path.getsize('check.extxyz') > 0


def test_split_is_deterministic_and_keeps_training_frames():
    train, validation = split_indices(20, 0.1, 0)
    assert len(validation) == 2 and len(train) == 18 and not set(train) & set(validation)
    assert np.array_equal(split_indices(20, 0.1, 0)[1], validation)
    assert len(split_indices(1, 0.5, 0)[0]) == 1
    # frames that must be fitted (the card's targets) are never held out; the validation count stays the same
    always = list(validation) + [5]
    train2, validation2 = split_indices(20, 0.1, 0, always)
    assert len(validation2) == 2 and not set(always) & set(validation2) and set(always) <= set(train2)
    assert len(split_indices(3, 0.5, 0, [0, 1, 2])[1]) == 0  # nothing left to hold out: all fitted


def test_frame_sigma_gives_gap_fit_a_sigma_per_kind_of_frame(reference_frames):
    """Frames whose key names a `frame_sigma` entry get it as their config_type; gap_fit receives the sigmas."""
    from aiida_ferromlip.calculations.gap_fit import gap_fit_frames, parameter_problems

    origins = [{'frame_key': f'it001_card_soft_modes_{i}' if i < 2 else f'seed_{i}'} for i in range(4)]
    training_set = TrainingSet(frames=reference_frames[:4], origins=origins)
    sigma = {'card_soft_modes': [0.001, 0.01, 0.05, 0.0]}
    frames = gap_fit_frames(training_set, range(4), sigma)
    assert [f.info['config_type'] for f in frames] == ['card_soft_modes'] * 2 + ['default'] * 2
    parameters = {**GapFitCalculation.get_protocol_inputs('fast')['parameters'], 'frame_sigma': sigma}
    command = engine.gap_fit_command(parameters, [56, 22, 8], 'train.extxyz')
    assert 'config_type_sigma={card_soft_modes:0.001:0.01:0.05:0.0}' in command
    assert parameter_problems({**parameters, 'frame_sigma': {'bad name!': [0.1, 0.1, 0.1, 0]}})


def test_soap_turbo_descriptor_reaches_gap_fit(reference_frames, tmp_path, monkeypatch):
    """soap_turbo's per-species vectors (alpha_max, widths, ...) are written as gap_fit's ``{{a b c}}``: a plain list
    or single braces make gap_fit abort (``string_to_int: could not convert``) and the dry run find no estimate."""
    from aiida_ferromlip.calculations.gap_fit import gap_fit_frames

    monkeypatch.chdir(tmp_path)
    three = [0.5] * 3
    turbo = {'type': 'soap_turbo', 'l_max': 3, 'alpha_max': [4, 4, 4], 'atom_sigma_r': three, 'atom_sigma_t': three,
             'atom_sigma_r_scaling': [0.0] * 3, 'atom_sigma_t_scaling': [0.0] * 3, 'amplitude_scaling': [1.0] * 3,
             'central_weight': [1.0] * 3, 'rcut_hard': 3.8, 'rcut_soft': 3.3, 'basis': 'poly3gauss',
             'scaling_mode': 'polynomial', 'radial_enhancement': 1, 'compress_mode': 'trivial', 'n_species': 3,
             'species_Z': [56, 22, 8], 'zeta': 4, 'delta': 0.2, 'covariance_type': 'dot_product', 'n_sparse': 20}
    parameters = {**GapFitCalculation.get_protocol_inputs('fast')['parameters'], 'descriptors': [turbo]}
    command = engine.gap_fit_command(parameters, [56, 22, 8], 'train.extxyz')
    gap = next(part for part in command if part.startswith('gap='))
    assert 'alpha_max={{4 4 4}}' in gap and 'species_Z={{56 22 8}}' in gap and 'sparse_method=cur_points' in gap
    frames = gap_fit_frames(TrainingSet(frames=reference_frames[:4]), range(4))
    assert engine.dryrun_peak(parameters, [56, 22, 8], {}, frames, 1.0, 0) > 0
