"""Dielectric response from dipole fluctuations (the BaTiO3-GAP paper eqs. 4-6) and unit-cell dipoles from partial dipoles,
checked against closed forms: a Gaussian dipole of known covariance, a Curie-Weiss curve, a Debye relaxation."""

import numpy as np
import pytest
from scipy import constants

from aiida_ferromlip.analysis.dielectric import (
    E_ANGSTROM,
    curie_weiss_fit,
    dipole_autocorrelation,
    static_dielectric_tensor,
    susceptibility_spectrum,
)
from aiida_ferromlip.materials import perovskite_polymorph
from aiida_ferromlip.materials.order_parameters import cell_dipoles_from_partials


def test_static_tensor_from_a_known_covariance():
    rng = np.random.default_rng(0)
    covariance = np.array([[4.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 1.0]])   # (e·Å)²
    dipoles = rng.multivariate_normal([0.0, 0.0, 30.0], covariance, size=200000)  # a polar mean is subtracted
    volume, temperature = 64 * 64.0, 300.0
    eps = static_dielectric_tensor(dipoles, volume, temperature)
    scale = E_ANGSTROM ** 2 / (constants.epsilon_0 * volume * 1e-30 * constants.k * temperature)
    np.testing.assert_allclose(eps, np.eye(3) + covariance * scale, rtol=0.02, atol=0.02 * scale)
    with pytest.raises(ValueError, match='two frames'):
        static_dielectric_tensor(dipoles[:1], volume, temperature)


def test_curie_weiss_fit_recovers_its_parameters():
    temperatures = np.array([200.0, 225, 250, 300, 350, 400, 500])
    eps = 57100 / (temperatures - 167.4) + 90
    fit = curie_weiss_fit(temperatures, eps * (1 + 0.002 * np.sin(temperatures)))   # the BaTiO3-GAP paper's 4x4x4 numbers
    assert fit['Tc_K'] == pytest.approx(167.4, abs=2) and fit['C_K'] == pytest.approx(57100, rel=0.05)
    with pytest.raises(ValueError, match='at least 4'):
        curie_weiss_fit(temperatures[:3], eps[:3])
    with pytest.raises(ValueError, match='does not grow'):
        curie_weiss_fit(temperatures, temperatures / 10)   # eps rising with T: below a transition


def test_debye_relaxation_from_an_ornstein_uhlenbeck_dipole():
    """A dipole relaxing exponentially (time tau) has chi(w) = (eps - 1) / (1 + i w tau)."""
    rng = np.random.default_rng(1)
    dt_fs, tau_fs, frames = 2.0, 100.0, 200000
    decay = np.exp(-dt_fs / tau_fs)
    noise = rng.normal(size=(frames, 3)) * np.sqrt(1 - decay ** 2)
    dipoles = np.zeros((frames, 3))
    for k in range(1, frames):
        dipoles[k] = decay * dipoles[k - 1] + noise[k]
    correlation = dipole_autocorrelation(dipoles, 300)
    np.testing.assert_allclose(correlation[:150], np.exp(-np.arange(150) * dt_fs / tau_fs), atol=0.03)
    frequencies, chi = susceptibility_spectrum(dipoles, dt_fs, eps_static=11.0, max_lag=1500,
                                               frequencies_thz=[0.0, 0.5, 1.0, 3.0, 8.0, 20.0])
    debye = 10.0 / (1 + 1j * 2 * np.pi * frequencies * tau_fs * 1e-3)
    np.testing.assert_allclose(chi, debye, atol=0.6)
    assert chi[0].real == pytest.approx(10.0) and abs(chi[0].imag) < 1e-12   # the static limit is eps - 1


def test_unit_cell_dipoles_share_every_atom_once():
    for supercell in [(1, 1, 1), (2, 2, 2), (3, 2, 1)]:
        atoms = perovskite_polymorph('Ba', 'Ti', 'R3m', supercell=supercell)
        partials = np.random.default_rng(2).normal(size=(len(atoms), 3))
        positions, cells = cell_dipoles_from_partials(atoms, partials)
        assert cells.shape == (len(atoms) // 5, 3)
        np.testing.assert_allclose(cells.sum(axis=0), partials.sum(axis=0))
    # by hand in the 2x2x2 cell: only one O carries a dipole -> its two Ti cells get half each
    atoms = perovskite_polymorph('Ba', 'Ti', 'Pm-3m', supercell=(2, 2, 2))
    partials = np.zeros((len(atoms), 3))
    oxygen = atoms.get_chemical_symbols().index('O')
    partials[oxygen] = [0.0, 0.0, 2.0]
    _, cells = cell_dipoles_from_partials(atoms, partials)
    assert sorted(cells[:, 2]) == [0.0] * 6 + [1.0, 1.0]
    with pytest.raises(ValueError, match='one partial dipole per atom'):
        cell_dipoles_from_partials(atoms, partials[:-1])


def test_static_dielectric_tensor_against_the_fluctuation_formula_by_hand():
    """Dipoles of +-1 e·Å along each axis in turn (biased covariance exactly the identity, in (e·Å)^2), V = 1000 Å^3,
    T = 300 K: eps - 1 = (e Å)^2 / (eps0 V kB T) = 6.9995 (worked by hand in SI), isotropic, off-diagonals 0."""
    from aiida_ferromlip.analysis.dielectric import static_dielectric_tensor

    dipoles = np.concatenate([np.eye(3), -np.eye(3)]) * np.sqrt(3)  # each axis: variance (2 x 3) / 6 = 1
    tensor = static_dielectric_tensor(dipoles, 1000.0, 300.0)
    np.testing.assert_allclose(np.diag(tensor), 1 + 6.9995, rtol=1e-4)
    np.testing.assert_allclose(tensor - np.diag(np.diag(tensor)), 0, atol=1e-12)
