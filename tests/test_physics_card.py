"""The physics card as a work chain: the labeller's side, then a deliberately poor potential that must fail the double
well (a GAP fitted on rattles of cubic BaTiO3 alone never sees a polar state), the labeller side reused."""

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_ferromlip.calculations.gap_fit import GapFitCalculation
from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.engines.reference import label_frames
from aiida_ferromlip.materials import batio3_polymorphs, rattled_strained
from aiida_ferromlip.materials.paths import scaled_to_lattice
from aiida_ferromlip.workflows.physics_card import PhysicsCardWorkChain

from .conftest import executable

#: A lighter card than the protocol's (5 EOS points, 5 images per path, 60 MD steps) with the same tolerances.
SMALL = {'parameters': {'eos_strains': [-0.02, -0.01, 0.0, 0.01, 0.02], 'path_displacements': [0, 0.05, 0.1, 0.15, 0.2],
                        'md_steps': 60, 'md_stride': 6, 'md_temperatures': [300], 'test_md_frames': 4,
                        'test_polymorph_frames': 4, 'relax': {'fmax': 0.01, 'max_steps': 150}}}


@pytest.fixture
def codes(aiida_code_installed):
    return {name: aiida_code_installed(label=name, default_calc_job_plugin=plugin, filepath_executable=executable(name))
            for name, plugin in (('ferromlip-label', 'ferromlip.reference_label'), ('ferromlip-gap', 'ferromlip.gap_fit'),
                                 ('ferromlip-md', 'ferromlip.sample'), ('ferromlip-task', 'ferromlip.atoms_task'))}


def card_builder(codes, potential=None, **inputs):
    builder = PhysicsCardWorkChain.get_builder_from_protocol(
        codes['ferromlip-label'], codes['ferromlip-task'], codes['ferromlip-md'], potential=potential,
        material='BaTiO3', protocol='fast', overrides=SMALL)
    for key, value in inputs.items():
        builder[key] = value
    return builder


def test_a_potential_without_polar_states_fails_the_double_well(codes, sevennet):
    # the labeller's side alone: its equilibrium, wells and phonons at that lattice
    results, node = run_get_node(card_builder(codes))
    assert node.is_finished_ok, node.exit_message
    reference = results['reference_values'].get_dict()
    # SevenNet-0's cubic BaTiO3 (measured here): a0 ~ 4.035 Å, a [111] well of several meV/f.u. there
    assert reference['eos']['lattice'] == pytest.approx(4.035, abs=0.01)
    assert reference['wells']['111']['well']['depth_meV_per_fu'] < -3
    assert reference['soft_modes']['frequencies']['Γ'][0] < -1

    # the poor potential: rattles of the cubic cell only, at the labeller's lattice
    cubic = scaled_to_lattice(batio3_polymorphs()['Pm-3m'], reference['eos']['lattice'])
    frames, failures, _ = label_frames(rattled_strained(cubic, 10, rattle=0.03, strain=0.005, seed=3), sevennet)
    assert not failures
    training_set = TrainingSet(frames=frames, origins=[{'labeller': 'sevennet:7net-0'}] * len(frames)).store()
    fit = GapFitCalculation.get_builder_from_protocol(codes['ferromlip-gap'], training_set, protocol='fast',
                                                      overrides={'parameters': {'clip_sparse': True}})
    fitted, fit_node = run_get_node(fit)
    assert fit_node.is_finished_ok, fit_node.exit_message

    results, node = run_get_node(card_builder(codes, fitted['potential'], reference_values=results['reference_values']))
    assert node.is_finished_ok, node.exit_message
    card = results['card'].get_dict()
    rows = {(row['group'], row['item']): row for row in card['rows']}
    assert not rows[('wells', '111 depth')]['passed']
    assert 'wells' in card['failed_groups'] and not card['passed']
    assert len(results['test_set']) == 8
    # the frames where the well was measured go back to the loop
    assert any(key.startswith('wells_111') for key in results['targets'])
    assert results['plot'].filename == 'physics_card.png' and '| wells | 111 depth |' in results['card']['markdown']


def test_bad_card_inputs_fail_before_any_job(codes):
    builder = card_builder(codes)
    builder.material = orm.Str('HfO2')
    with pytest.raises(ValueError, match='knows no parent phase and displacement path'):
        run_get_node(builder)
    builder = card_builder(codes)
    builder.parameters = orm.Dict({**builder.parameters.get_dict(), 'md_stepz': 3})
    with pytest.raises(ValueError, match='unknown card parameters'):
        run_get_node(builder)
