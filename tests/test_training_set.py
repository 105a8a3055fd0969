"""TrainingSet: storage, extxyz round trips, imports, merging with provenance, bad inputs."""

import io

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from aiida_ferromlip.data.training_set import (
    TrainingSet,
    formula_units,
    merge_training_sets,
    training_set_from_extxyz,
)


def assert_same_labels(a: Atoms, b: Atoms):
    assert a.get_chemical_symbols() == b.get_chemical_symbols()
    np.testing.assert_allclose(a.positions, b.positions, atol=1e-8)
    np.testing.assert_allclose(a.cell.array, b.cell.array, atol=1e-8)
    assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-8)
    np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-8)
    has_stress = 'stress' in a.calc.results
    assert has_stress == ('stress' in b.calc.results)
    if has_stress:
        np.testing.assert_allclose(a.get_stress(), b.get_stress(), atol=1e-10)


def test_store_and_reload(labelled_frames):
    ts = TrainingSet(frames=labelled_frames, origins=[{'labeller': 'test', 'index': i} for i in range(3)]).store()
    loaded = orm.load_node(ts.pk)
    assert isinstance(loaded, TrainingSet)
    assert len(loaded) == 3 and loaded.species == ['Ba', 'O', 'Ti']
    assert loaded.get_array('n_atoms').tolist() == [5, 5, 10]
    for original, restored in zip(labelled_frames, loaded.to_atoms()):
        assert_same_labels(original, restored)
    assert loaded.get_frame(-1).info['origin'] == {'labeller': 'test', 'index': 2}
    assert np.isnan(loaded.get_array('stresses')[1]).all()  # frame without stress keeps NaN, not zeros


def test_extxyz_round_trip(labelled_frames, tmp_path):
    ts = TrainingSet(frames=labelled_frames)
    path = tmp_path / 'set.extxyz'
    ts.write_extxyz(path)
    back = TrainingSet.from_extxyz(path)
    assert len(back) == len(ts)
    for original, restored in zip(labelled_frames, back.to_atoms()):
        assert_same_labels(original, restored)
    assert all(o['labeller'] == 'extxyz' for o in back.origins)


def test_extxyz_custom_keys_and_virial(labelled_frames):
    atoms = labelled_frames[0].copy()
    volume = atoms.get_volume()
    stress = labelled_frames[0].get_stress(voigt=False)
    atoms.info['REF_energy'] = -12.5
    atoms.arrays['REF_forces'] = labelled_frames[0].get_forces()
    atoms.info['virial'] = (-stress * volume).ravel()
    handle = io.StringIO()
    from ase.io import write

    write(handle, [atoms], format='extxyz')
    ts = TrainingSet.from_extxyz(io.StringIO(handle.getvalue()), energy_key='REF_energy', forces_key='REF_forces')
    frame = ts.get_frame(0)
    assert frame.get_potential_energy() == pytest.approx(-12.5)
    np.testing.assert_allclose(frame.get_stress(voigt=False), stress, atol=1e-10)


def test_extxyz_without_energy_is_refused(tmp_path):
    atoms = Atoms('BaTiO3', cell=np.eye(3) * 4, pbc=True, scaled_positions=np.random.default_rng(1).random((5, 3)))
    from ase.io import write

    path = tmp_path / 'no_energy.extxyz'
    write(path, [atoms], format='extxyz')
    with pytest.raises(ValueError, match='no energy'):
        TrainingSet.from_extxyz(path)


def test_extxyz_without_forces_is_refused(tmp_path):
    atoms = Atoms('BaTiO3', cell=np.eye(3) * 4, pbc=True, scaled_positions=np.random.default_rng(1).random((5, 3)))
    atoms.info['energy'] = -3.0
    from ase.io import write

    path = tmp_path / 'no_forces.extxyz'
    write(path, [atoms], format='extxyz')
    with pytest.raises(ValueError, match='no forces'):
        TrainingSet.from_extxyz(path)


def test_frames_without_labels_or_with_nan_are_refused(labelled_frames):
    unlabelled = labelled_frames[0].copy()
    with pytest.raises(ValueError, match='no energy'):
        TrainingSet(frames=[unlabelled])
    broken = labelled_frames[0].copy()
    broken.calc = SinglePointCalculator(broken, energy=float('nan'), forces=np.zeros((5, 3)))
    with pytest.raises(ValueError, match='not finite'):
        TrainingSet(frames=[broken])
    with pytest.raises(ValueError, match='origins'):
        TrainingSet(frames=labelled_frames, origins=[{}])


def test_merge_is_a_calcfunction_with_provenance(labelled_frames):
    first = TrainingSet(frames=labelled_frames[:2], origins=[{'labeller': 'a'}] * 2).store()
    second = TrainingSet(frames=labelled_frames[2:], origins=[{'labeller': 'b'}]).store()
    merged = merge_training_sets(first=first, second=second)
    assert len(merged) == 3
    assert [o['labeller'] for o in merged.origins] == ['a', 'a', 'b']
    creator = merged.base.links.get_incoming(link_type=LinkType.CREATE).one().node
    inputs = {link.node.uuid for link in creator.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()}
    assert inputs == {first.uuid, second.uuid}


def test_import_from_file_node_records_origin(labelled_frames, tmp_path):
    path = tmp_path / 'user.extxyz'
    TrainingSet(frames=labelled_frames).write_extxyz(path)
    file_node = orm.SinglefileData(path)
    ts = training_set_from_extxyz(file_node)
    assert len(ts) == 3
    assert {o['file_uuid'] for o in ts.origins} == {file_node.uuid}
    assert [o['index'] for o in ts.origins] == [0, 1, 2]


def test_formula_units(labelled_frames):
    assert formula_units(labelled_frames[2]) == 2
    assert TrainingSet(frames=labelled_frames).formula_units().tolist() == [1, 1, 2]
