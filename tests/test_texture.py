"""Vortex-antivortex texture (minimalist paper, Fig. 4): the hand-built texture's winding numbers, and the workflow with a
small BaTiO3 GAP judged against the reference labeller on the same relaxed cells."""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_ferromlip.analysis.physics_card import within_tolerance
from aiida_ferromlip.materials import dipole_texture
from aiida_ferromlip.materials.order_parameters import dipole_map, polarization, winding_numbers
from aiida_ferromlip.workflows.benchmarks.physics_card import card_protocol_inputs
from aiida_ferromlip.workflows.benchmarks.texture import VortexTextureWorkChain


def test_built_texture_has_two_vortices_and_two_antivortices():
    texture = dipole_texture(size=4, layers=2)
    grid, dipoles = dipole_map(texture)
    winding = winding_numbers(grid, dipoles)
    assert len(texture) == 160 and grid.shape == (16, 2)
    assert (winding == 1).sum() == 2 and (winding == -1).sum() == 2 and winding.sum() == 0
    assert np.allclose(polarization(texture), 0, atol=1e-12)          # a texture has no net polarization
    homogeneous = dipole_texture(size=4, kind='homogeneous')
    grid, dipoles = dipole_map(homogeneous)
    assert not winding_numbers(grid, dipoles).any()
    p = polarization(homogeneous)
    assert p[0] == pytest.approx(p[1]) and p[0] > 0.05 and abs(p[2]) < 1e-12
    with pytest.raises(ValueError, match='even size'):
        dipole_texture(size=3)


def test_texture_workflow_with_a_small_gap(gap_potential, label_code, task_code):
    """The texture's cost against the homogeneous state is the labeller's on the same relaxed cells, within the
    physics card's tolerance for energy differences between states, max(1 meV/f.u., 10 %). Measured before this
    test was written (the same recipe outside AiiDA, docs/fidelity.md): this GAP 3.75 against SevenNet-0's 4.20
    meV/f.u.; a GAP that never saw a polar cell has no texture cost to give."""
    builder = VortexTextureWorkChain.get_builder_from_protocol(
        label_code, task_code, gap_potential, overrides={'parameters': {'fmax': 0.05, 'max_steps': 150}},
        texture=orm.StructureData(ase=dipole_texture(size=4, amplitude=0.12)),
        homogeneous=orm.StructureData(ase=dipole_texture(size=4, amplitude=0.12, kind='homogeneous')))
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    summary = results['summary'].get_dict()
    texture, homogeneous = summary['texture'], summary['homogeneous']
    assert texture['steps'] > 0 and texture['vortices'] == texture['antivortices']
    assert homogeneous['vortices'] == homogeneous['antivortices'] == 0
    # the labeller puts the relaxed texture well above the homogeneous state (a check that a potential without the
    # texture's cost fails), and the potential's difference on the same cells is the labeller's within tolerance
    tolerance = card_protocol_inputs('fast')['tolerances']['polymorphs']
    reference = summary['reference_energy_difference_meV_per_fu']
    assert summary['reference_complete'] and reference > 2 * tolerance['energy_meV_per_fu']
    agrees, allowed = within_tolerance(summary['energy_difference_meV_per_fu'], reference,
                                       tolerance['energy_meV_per_fu'], tolerance['energy_relative'])
    assert agrees, (summary['energy_difference_meV_per_fu'], reference, allowed)
    maps = results['dipole_maps']
    assert maps.get_array('texture_dipoles_relaxed').shape == (16, 3)
    assert results['plot'].get_content('rb')[:4] == b'\x89PNG'
    assert len(results['relaxed_texture'].sites) == 80


def test_a_structure_without_texture_is_refused(gap_potential, label_code, task_code):
    homogeneous = orm.StructureData(ase=dipole_texture(size=4, kind='homogeneous'))
    builder = VortexTextureWorkChain.get_builder_from_protocol(label_code, task_code, gap_potential,
                                                               texture=homogeneous, homogeneous=homogeneous)
    with pytest.raises(ValueError, match='carries no vortex or antivortex'):
        run_get_node(builder)
