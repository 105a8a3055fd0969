"""Switching path (minimalist paper, Fig. 5): climbing-image NEB between two R3m variants of BaTiO3 with a small GAP,
the reference labeller on the same images."""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_ferromlip.analysis.physics_card import within_tolerance
from aiida_ferromlip.materials import rattled_strained, switching_endpoints
from aiida_ferromlip.materials.perovskites import PSEUDOCUBIC_2x2x2, glazer_perovskite
from aiida_ferromlip.workflows.benchmarks.physics_card import card_protocol_inputs
from aiida_ferromlip.workflows.benchmarks.switching import SwitchingPathWorkChain

from .conftest import fit_gap_directly, stored_gap


@pytest.fixture(scope='module')
def polar_gap_potential(reference_frames, sevennet, tmp_path_factory):
    """The conftest GAP's 16 frames plus 12 polar states at the path's lattice: every Ti displaced along [111],
    [11-1] or [110] (the path's ends and its orthorhombic middle) by a random 0-0.2 Å, rattled 0.01 Å and strained
    0.3 % (the physics card's target frames: a larger rattle drowns a well of a few meV/f.u.). The `fast` preset,
    fitted by gap_fit directly."""
    from aiida_ferromlip.engines.reference import label_frames

    rng = np.random.default_rng(11)
    polar = []
    for axis in ([1, 1, 1], [1, 1, -1], [1, 1, 0]):
        axis = np.array(axis, float) / np.linalg.norm(axis)
        for amplitude in rng.uniform(0.0, 0.2, 4):
            cell = glazer_perovskite('Ba', 'Ti', PSEUDOCUBIC_2x2x2, lattice=4.0,
                                     b_shift=lambda *_, shift=amplitude * axis: shift)
            polar += rattled_strained(cell, 1, rattle=0.01, strain=0.003, seed=int(rng.integers(10**6)))
    labelled, failures, _ = label_frames(polar, sevennet)
    assert not failures
    return stored_gap(fit_gap_directly(reference_frames + labelled, tmp_path_factory.mktemp('polar_gap')))


def endpoints():
    # BaTiO3 (the GAP fixture's species): P along [111] and [11-1], no rotations (BaTiO3 does not tilt)
    first, second = switching_endpoints('Ba', 'Ti', lattice=4.0, tilt=0, a_shift=0.0, b_shift=0.1)
    return orm.StructureData(ase=first), orm.StructureData(ase=second)


def test_batio3_polarization_switching_path(polar_gap_potential, label_code, task_code):
    """A GAP that has seen the polar states at this lattice (not the path) reproduces the labeller's switching barrier
    within the physics card's tolerance for a well depth, set in physics_card.yaml before this test existed. (The
    conftest GAP, 16 rattled polymorph cells without those states, gave 2.99 against the labeller's 4.20 meV/f.u.
    here: it fails that tolerance, docs/fidelity.md.)"""
    initial, final = endpoints()
    builder = SwitchingPathWorkChain.get_builder_from_protocol(
        label_code, task_code, polar_gap_potential,
        overrides={'parameters': {'images': 5, 'fmax': 0.1, 'max_steps': 200}},
        initial=initial, final=final)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    profile, summary = results['profile'], results['summary'].get_dict()
    energy = profile.get_array('energy_meV_per_fu')
    polarization = profile.get_array('polarization_C_per_m2')
    assert len(energy) == 7 == results['path'].numsteps
    # P_z reverses along the path, P_x and P_y keep their sign; the end points are the path's minima
    assert polarization[0, 2] > 0.05 and polarization[-1, 2] < -0.05
    assert np.all(polarization[:, 0] > 0) and np.all(polarization[:, 1] > 0)
    assert min(energy[0], energy[-1]) == 0.0 and energy[1:-1].min() >= min(energy[0], energy[-1])
    # the mirror-symmetric path crosses P_z = 0 half way (BaTiO3 passes through the orthorhombic [110] state, which
    # this GAP and SevenNet-0 put within a few meV/f.u. of R3m: a small barrier is the physics of these models)
    middle = len(energy) // 2
    assert abs(polarization[middle, 2]) < 0.3 * polarization[0, 2]
    assert summary['barrier_meV_per_fu'] >= energy[middle] - 1e-9 and energy[middle] >= 0  # JSON-rounded max
    assert summary['charges'].startswith('Born effective charges of BaTiO3')
    # the reference labelled every image; its barrier on the same images is the potential's within the card's
    # well-depth tolerance, max(1 meV/f.u., 15 %)
    assert summary['reference_complete'] and summary['reference_barrier_meV_per_fu'] > 0
    tolerance = card_protocol_inputs('fast')['tolerances']['wells']
    agrees, allowed = within_tolerance(summary['barrier_meV_per_fu'], summary['reference_barrier_meV_per_fu'],
                                       tolerance['depth_meV_per_fu'], tolerance['depth_relative'])
    assert agrees, (summary['barrier_meV_per_fu'], summary['reference_barrier_meV_per_fu'], allowed)
    assert results['plot'].get_content('rb')[:4] == b'\x89PNG'


def test_bad_switching_inputs(gap_potential, label_code, task_code):
    initial, final = endpoints()
    squeezed = final.get_ase()
    squeezed.set_cell(squeezed.cell * 0.99, scale_atoms=True)
    cases = [({'final': orm.StructureData(ase=squeezed)}, 'share one cell'),
             ({'parameters': {'images': 0}}, 'at least 1 intermediate image'),
             ({'parameters': {'nimages': 3}}, 'unknown switching path parameters')]
    for change, message in cases:
        inputs = {'initial': initial, 'final': final, **{k: v for k, v in change.items() if k != 'parameters'}}
        builder = SwitchingPathWorkChain.get_builder_from_protocol(
            label_code, task_code, gap_potential, overrides={'parameters': change.get('parameters', {})}, **inputs)
        with pytest.raises(ValueError, match=message):
            run_get_node(builder)
