"""Phonon benchmark of the minimalist paper (Fig. 3): a GAP against the reference labeller on cubic BaTiO3."""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase import Atoms

from aiida_ferromlip.provenance import labelling_calculations
from aiida_ferromlip.workflows.benchmarks.phonons import PhononBenchmarkWorkChain

from .conftest import cubic_batio3


def builder_for(potential, label_code, task_code, structure, **parameters):
    return PhononBenchmarkWorkChain.get_builder_from_protocol(label_code, task_code, potential,
                                                             overrides={'parameters': parameters},
                                                             structure=structure)


def test_cubic_batio3_phonons_gap_against_reference(gap_potential, label_code, task_code):
    builder = builder_for(gap_potential, label_code, task_code, orm.StructureData(ase=cubic_batio3()), npoints=21)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    summary = results['summary'].get_dict()

    # The reference (SevenNet-0) finds cubic BaTiO3's ferroelectric instability: a triply degenerate polar mode
    # at Γ with an imaginary frequency (minimalist paper, Fig. 3), plus the unstable branches towards X and M.
    gamma = summary['unstable_modes_reference']['Γ']
    assert len(gamma) == 3 and max(gamma) < -2.0 and np.ptp(gamma) < 0.1
    assert summary['path'][:5] == ['Γ', 'X', 'M', 'Γ', 'R'] and 'X|R' in summary['path']
    assert summary['num_displacements'] == 3  # Ba, Ti and one O are inequivalent in Pm-3m

    bands = results['bands']
    # the acoustic sum rule: three modes at Γ (the path's first vertex) within 0.3 THz of zero on both sides; it
    # fails if forces and displacements are paired in the wrong order
    assert bands.base.attributes.get('vertex_labels')[0] == 'Γ'
    for side in ('reference', 'potential'):
        assert np.sum(np.abs(bands.get_array(f'{side}_vertex_frequencies')[0]) < 0.3) >= 3, side
    nbands = 15  # 5 atoms x 3
    assert bands.get_array('reference_frequencies').shape[1] == nbands
    assert bands.get_array('potential_frequencies').shape == bands.get_array('reference_frequencies').shape
    assert results['plot'].get_content('rb')[:4] == b'\x89PNG'
    # both sides are aiida-phonopy PhonopyData carrying the forces their TrainingSets hold, in phonopy's order
    reference_forces = results['reference_forces'].frames_by_key()
    phonon = results['reference_phonopy'].get_phonopy_instance()
    assert np.allclose(phonon.forces, [reference_forces[k].get_forces() for k in sorted(reference_forces)])
    assert len(results['potential_phonopy'].get_phonopy_instance().forces) == 3
    # the reference forces lead back to their labelling calculation
    assert len(labelling_calculations(results['reference_forces'])) == 1


def test_bad_phonon_inputs_fail_before_any_job(gap_potential, label_code, task_code):
    with pytest.raises(ValueError, match=r'use at least a 2x2x2 supercell'):
        run_get_node(builder_for(gap_potential, label_code, task_code, orm.StructureData(ase=cubic_batio3()),
                                 supercell=[1, 1, 1]))
    srtio3 = Atoms('SrTiO3', cell=np.eye(3) * 3.9, pbc=True,
                   scaled_positions=[[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])
    with pytest.raises(ValueError, match='the potential has no Sr'):
        run_get_node(builder_for(gap_potential, label_code, task_code, orm.StructureData(ase=srtio3)))
    with pytest.raises(ValueError, match='unknown phonon parameters'):
        run_get_node(builder_for(gap_potential, label_code, task_code, orm.StructureData(ase=cubic_batio3()), mesh=3))
