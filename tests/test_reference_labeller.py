"""The reference labeller itself (SevenNet-0, no AiiDA): physics checks and per-frame failure handling."""

import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes

from aiida_ferromlip.engines.reference import label_frames, supported_species

from .conftest import cubic_batio3


def test_supported_species_and_unknown_model():
    species = supported_species('7net-0')
    assert {'Ba', 'Ti', 'O', 'Bi', 'Fe', 'Pb', 'Zr', 'Hf'} <= species
    assert 'Po' not in species
    with pytest.raises(ValueError, match='unknown reference model'):
        supported_species('7net-omni')  # would be downloaded at run time: refused offline


def test_displaced_ti_forces_are_consistent_with_energy(sevennet):
    """Forces sum to zero and the Ti force equals minus the finite-difference energy slope."""
    atoms = cubic_batio3(4.0)
    atoms.positions[1, 2] += 0.05
    (frame,), failures, _ = label_frames([atoms.copy()], sevennet)
    assert failures == {}
    forces = frame.get_forces()
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-3)
    assert frame.get_stress().shape == (6,)

    h = 0.005
    energies = []
    for sign in (+1, -1):
        displaced = atoms.copy()
        displaced.positions[1, 2] += sign * h
        displaced.calc = sevennet
        energies.append(displaced.get_potential_energy())
    finite_difference = -(energies[0] - energies[1]) / (2 * h)
    assert forces[1, 2] == pytest.approx(finite_difference, abs=2e-3)
    # SevenNet-0 reproduces BaTiO3's ferroelectric instability: at a = 4.0 Å a small off-centring of Ti
    # is pushed further out, not back to the centre.
    assert forces[1, 2] > 0


class FailsOnLargeCells(Calculator):
    """Raises for cells with more than 5 atoms: exercises the per-frame error path with a real exception."""

    implemented_properties = ['energy', 'forces', 'stress']

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def calculate(self, atoms=None, properties=('energy',), system_changes=all_changes):
        if len(atoms) > 5:
            raise RuntimeError('cell too large for this test calculator')
        super().calculate(atoms, properties, system_changes)
        atoms = atoms.copy()
        atoms.calc = self.inner
        self.results = {'energy': atoms.get_potential_energy(), 'forces': atoms.get_forces(),
                        'stress': atoms.get_stress()}


def test_a_failing_frame_is_reported_not_dropped(sevennet):
    small, large = cubic_batio3(), cubic_batio3().repeat((2, 1, 1))
    small.info['frame_key'], large.info['frame_key'] = 'small', 'large'
    labelled, failures, timings = label_frames([small, large], FailsOnLargeCells(sevennet))
    assert [a.info['frame_key'] for a in labelled] == ['small']
    assert failures == {'large': 'RuntimeError: cell too large for this test calculator'}
    assert set(timings) == {'small', 'large'}


def test_absurd_forces_are_rejected(sevennet):
    atoms = cubic_batio3()
    atoms.positions[1, 2] += 0.3
    atoms.info['frame_key'] = 'kicked'
    labelled, failures, _ = label_frames([atoms], sevennet, max_force=0.01)
    assert labelled == [] and 'exceeds 0.01 eV/Å' in failures['kicked']
