"""Allegro/NequIP through NequipTrainCalculation: a real (tiny) training, its deployment, and fail-fast inputs."""

import numpy as np
import pytest
from aiida.engine import run_get_node

from aiida_ferromlip.calculations.nequip_train import NequipTrainCalculation
from aiida_ferromlip.data.potential import NequipPotential
from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.engines import nequip_train as engine
from aiida_ferromlip.engines.potentials import calculator_from_spec

from .conftest import executable


@pytest.fixture
def nequip_code(aiida_code_installed):
    return aiida_code_installed(label='ferromlip-nequip', default_calc_job_plugin='ferromlip.nequip_train',
                                filepath_executable=executable('ferromlip-nequip'))


@pytest.fixture
def training_set(reference_frames):
    return TrainingSet(frames=reference_frames).store()


def test_tiny_allegro_trains_compiles_and_predicts(nequip_code, training_set, reference_frames, tmp_path):
    builder = NequipTrainCalculation.get_builder_from_protocol(
        nequip_code, training_set, protocol='fast',
        overrides={'parameters': {'compile': 'aotinductor'}, 'training': {'max_epochs': 3}})
    config = builder.config.get_dict()
    assert config['training_module']['model']['_target_'] == 'allegro.model.AllegroModel'
    assert config['model_type_names'] == ['Ba', 'O', 'Ti']
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)

    potential = results['potential']
    assert isinstance(potential, NequipPotential) and potential.species == ['Ba', 'O', 'Ti']
    assert potential.base.attributes.get('family') == 'allegro'
    assert potential.base.attributes.get('training_set_uuid') == training_set.uuid
    assert results['train_report']['device'] == 'cpu' and results['train_report']['epochs'] == 3

    # Energy, forces and stress from the portable archive and from the compiled build agree.
    atoms = reference_frames[0].copy()
    atoms.calc = potential.calculator()
    energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    assert np.isfinite(energy) and forces.shape == (40, 3) and stress.shape == (6,)
    assert np.abs(forces.sum(axis=0)).max() < 1e-3
    compiled = atoms.copy()
    compiled.calc = potential.calculator(compiled=True)
    assert compiled.get_potential_energy() == pytest.approx(energy, abs=1e-4)
    assert np.allclose(compiled.get_forces(), forces, atol=1e-4)
    assert results['compiled_model'].uuid == potential.base.attributes.get('compiled_model_uuid')

    # Loading a nequip model must not leave torch's default dtype at float64 for the rest of the process:
    # SevenNet (the reference labeller) then fails to load ("Float did not match Double").
    import torch

    from aiida_ferromlip.engines.reference import make_calculator
    assert torch.get_default_dtype() == torch.float32
    make_calculator('7net-0')

    # A job elsewhere rebuilds the same calculator from the files the node writes.
    spec, files = potential.job_files()
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    remote = atoms.copy()
    remote.calc = calculator_from_spec({**spec, 'file': str(tmp_path / spec['file'])})
    assert remote.get_potential_energy() == pytest.approx(energy, abs=1e-6)

    metrics = results['metrics'].get_dict()
    assert metrics['num_frames'] == 2 and metrics['forces_meV_per_A_rmse'] > 0
    assert results['parity_plot'].get_content('rb')[:4] == b'\x89PNG'
    curve = results['learning_curve']
    assert curve.get_array('epoch').tolist() == [0, 1, 2]
    assert np.all(np.isfinite(curve.get_array('validation_loss')))
    assert results['learning_curve_plot'].get_content('rb')[:4] == b'\x89PNG'

    # `ferromlip potential export`: the archive, the compiled build, and an ASE example that runs as written and
    # gives the node's energy on the first training frame
    import subprocess
    import sys

    from click.testing import CliRunner

    from aiida_ferromlip.cli import main

    result = CliRunner().invoke(main, ['potential', 'export', str(potential.pk), str(tmp_path / 'export')])
    assert result.exit_code == 0, result.output
    exported = {path.name for path in (tmp_path / 'export').iterdir()}
    assert {'model.nequip.zip', 'model.compiled.nequip.pt2', 'training_set.extxyz', 'README.md', 'lammps.in',
            'provenance.json', 'ase_example.py'} <= exported
    assert 'pair_style allegro' in (tmp_path / 'export' / 'lammps.in').read_text()
    printed = subprocess.run([sys.executable, 'ase_example.py'], cwd=tmp_path / 'export', check=True,
                             capture_output=True, text=True).stdout
    assert float(printed.split()[0]) == pytest.approx(energy, abs=1e-5)


def test_bad_training_inputs_fail_before_the_job(nequip_code, training_set, reference_frames):
    one_frame = TrainingSet(frames=reference_frames[:1]).store()
    with pytest.raises(ValueError, match='needs at least one training and one validation frame'):
        run_get_node(NequipTrainCalculation.get_builder_from_protocol(nequip_code, one_frame, protocol='fast'))
    with pytest.raises(ValueError, match=r"no atom type for Ba"):
        run_get_node(NequipTrainCalculation.get_builder_from_protocol(
            nequip_code, training_set, protocol='fast', overrides={'config': {'model_type_names': ['O', 'Ti']}}))
    with pytest.raises(ValueError, match='exceeds the shortest cell height'):
        run_get_node(NequipTrainCalculation.get_builder_from_protocol(
            nequip_code, training_set, protocol='fast', overrides={'config': {'cutoff_radius': 9.0}}))
    with pytest.raises(ValueError, match='unknown model family'):
        NequipTrainCalculation.get_builder_from_protocol(nequip_code, training_set, protocol='fast',
                                                         overrides={'model': {'family': 'mace'}})


def test_minimalist_protocol_is_minimalist_allegro(nequip_code, training_set):
    builder = NequipTrainCalculation.get_builder_from_protocol(nequip_code, training_set, protocol='minimalist')
    config = builder.config.get_dict()
    model = config['training_module']['model']
    assert config['cutoff_radius'] == 8.0 and model['num_layers'] == 2 and model['l_max'] == 3
    assert model['parity'] is True and model['radial_chemical_embed']['polynomial_cutoff_p'] == 6
    assert model['num_tensor_features'] == 64
    assert config['training_module']['loss']['coeffs'] == {'total_energy': 1.0, 'forces': 100.0, 'stress': 100.0}
    assert config['data']['train_dataloader']['batch_size'] == 1
    scheduler = config['training_module']['lr_scheduler']['scheduler']
    assert (scheduler['factor'], scheduler['patience']) == (0.5, 50)
    assert config['trainer']['callbacks'][-1]['min_lr'] == 1e-5
    assert builder.parameters['validation_fraction'] == 0.1


def test_diverged_training_is_detected_from_the_loss_log(tmp_path):
    csv = tmp_path / 'metrics.csv'
    # the layout Lightning writes: learning-rate rows with no epoch, then the epoch's train and val rows
    csv.write_text('epoch,lr-Adam,step,train_loss_epoch/weighted_sum,val0_epoch/weighted_sum\n'
                   ',0.001,0,,\n0,,3,0.5,\n0,,3,,0.4\n,0.0005,4,,\n1,,7,nan,\n1,,7,,nan\n2,,8,,0.3\n')
    curve = engine.loss_curve(csv)
    assert curve[0] == {'epoch': 0, 'train_loss': 0.5, 'validation_loss': 0.4, 'learning_rate': 0.001}
    assert curve[1]['learning_rate'] == 0.0005 and len(curve) == 2  # the final validation-only epoch is left out
    assert engine.diverged(curve) and not engine.diverged(curve[:1])
