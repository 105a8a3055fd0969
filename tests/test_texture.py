"""Vortex-antivortex texture (minimalist paper, Fig. 4): the hand-built texture's winding numbers, and the workflow with a
small BaTiO3 GAP."""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_ferromlip.materials import dipole_texture
from aiida_ferromlip.materials.order_parameters import dipole_map, polarization, winding_numbers
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


def test_texture_workflow_with_a_small_gap(gap_potential, task_code):
    builder = VortexTextureWorkChain.get_builder_from_protocol(
        task_code, gap_potential, orm.StructureData(ase=dipole_texture(size=4, amplitude=0.12)),
        orm.StructureData(ase=dipole_texture(size=4, amplitude=0.12, kind='homogeneous')),
        overrides={'parameters': {'fmax': 0.05, 'max_steps': 150}})
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    summary = results['summary'].get_dict()
    texture, homogeneous = summary['texture'], summary['homogeneous']
    # the relaxation changed the dipoles of the start field (a job really relaxed it) and kept no net polarization
    # in the texture (its windings cancel: as many antivortices as vortices, whatever survived)
    assert texture['steps'] > 0 and texture['vortices'] == texture['antivortices']
    assert homogeneous['vortices'] == homogeneous['antivortices'] == 0
    maps = results['dipole_maps']
    assert maps.get_array('texture_dipoles_relaxed').shape == (16, 3)
    assert results['plot'].get_content('rb')[:4] == b'\x89PNG'
    assert len(results['relaxed_texture'].sites) == 80


def test_a_structure_without_texture_is_refused(gap_potential, task_code):
    builder = VortexTextureWorkChain.get_builder()
    builder.potential, builder.task_code = gap_potential, task_code
    builder.texture = orm.StructureData(ase=dipole_texture(size=4, kind='homogeneous'))
    builder.homogeneous = builder.texture
    with pytest.raises(ValueError, match='carries no vortex or antivortex'):
        run_get_node(builder)
