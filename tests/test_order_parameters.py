"""Order parameters on hand-built distortions: local dipoles / polarization and octahedral rotations (R, M)."""

import numpy as np
import pytest

from aiida_ferromlip.materials import batio3_polymorphs, glazer_perovskite, perovskite_polymorph, polymorphs
from aiida_ferromlip.materials.order_parameters import (BORN_CHARGES, E_PER_A2_TO_C_PER_M2, local_dipoles,
                                                        perovskite_sites, polarization, tilt_amplitudes)
from aiida_ferromlip.materials.perovskites import PSEUDOCUBIC_2x2x2


def test_tetragonal_polarization_from_born_charges_by_hand():
    """P4mm built with Ti +0.08 Å and every O -0.06 Å along z (then 1 % strain along z): the Ti-centred dipole is
    Z_Ti u_Ti + 1/2 (2 Z_O|| + 4 Z_O_perp) u_O, the same in the 5-atom cell and in the 40-atom one."""
    z = BORN_CHARGES['BaTiO3']
    u_ti, u_o = 0.08 * 1.01, -0.06 * 1.01
    dipole = z['B'] * u_ti + 0.5 * (2 * z['O_par'] + 4 * z['O_perp']) * u_o
    for supercell in ((1, 1, 1), (2, 2, 2)):
        atoms = perovskite_polymorph('Ba', 'Ti', 'P4mm', supercell=supercell)
        expected = dipole * len(atoms) / 5 / atoms.get_volume() * E_PER_A2_TO_C_PER_M2
        assert polarization(atoms) == pytest.approx([0, 0, expected], abs=1e-9)
    assert 0.25 < expected < 0.35   # C/m^2, the order of BaTiO3's measured 0.26


def test_polarization_directions_of_the_batio3_phases():
    phases = batio3_polymorphs()
    assert np.allclose(polarization(phases['Pm-3m']), 0, atol=1e-12)
    r3m, amm2 = polarization(phases['R3m']), polarization(phases['Amm2'])
    assert r3m[0] == pytest.approx(r3m[1]) == pytest.approx(r3m[2]) and r3m[0] > 0
    assert amm2[0] == pytest.approx(amm2[1]) and amm2[2] == pytest.approx(0, abs=1e-12)
    # a uniform translation changes no dipole; reversing the distortion reverses P
    shifted = phases['R3m'].copy()
    shifted.positions += [0.3, -0.2, 1.1]
    assert polarization(shifted) == pytest.approx(r3m)
    _, dipoles = local_dipoles(phases['P4mm'])
    assert dipoles.shape == (8, 3) and np.allclose(dipoles, dipoles[0])


def read_back(degrees):
    return np.degrees(np.arctan(np.radians(degrees)))


@pytest.mark.parametrize('tilts, senses, expected_r, expected_m', [
    ((3, 4, 5), ('-', '-', '-'), (3, 4, 5), (0, 0, 0)),
    ((3, 4, 5), ('-', '-', '+'), (3, 4, 0), (0, 0, 5)),
    ((0, 0, 6), ('+', '+', '+'), (0, 0, 0), (0, 0, 6)),
])
def test_rotations_read_back_from_glazer_patterns(tilts, senses, expected_r, expected_m):
    atoms = glazer_perovskite('Sr', 'Ti', PSEUDOCUBIC_2x2x2, tilts=tilts, senses=senses)
    amplitudes = tilt_amplitudes(atoms)
    # the builder moves O linearly (angle x bond), so the angle read back is exactly atan(angle)
    assert amplitudes['R'] == pytest.approx(read_back(expected_r), abs=1e-9)
    assert amplitudes['M'] == pytest.approx(read_back(expected_m), abs=1e-9)
    assert np.allclose(polarization(atoms), 0, atol=1e-12)  # rotations are not polar


def test_reversed_rotation_reverses_r_and_incommensurate_patterns_have_none():
    forward = glazer_perovskite('Bi', 'Fe', PSEUDOCUBIC_2x2x2, tilts=(10, 10, 10))
    backward = glazer_perovskite('Bi', 'Fe', PSEUDOCUBIC_2x2x2, tilts=(10, 10, -10))
    assert tilt_amplitudes(backward)['R'][2] == pytest.approx(-tilt_amplitudes(forward)['R'][2])
    pnma = polymorphs('BiFeO3')['Pnma']   # 20 atoms: vectors (1,1,0), (1,-1,0), (0,0,2)
    amplitudes = tilt_amplitudes(pnma)
    assert amplitudes['M'][:2] == [None, None] and abs(amplitudes['M'][2]) == pytest.approx(read_back(9))
    assert abs(amplitudes['R'][0]) == pytest.approx(read_back(11))
    # antipolar AFE40: local dipoles cancel; ferrielectric FiE: they do not
    assert np.allclose(polarization(polymorphs('PbZrO3')['AFE40']), 0, atol=1e-9)
    assert np.abs(polarization(polymorphs('PbZrO3')['FiE'])).max() > 0.01


def test_not_a_perovskite():
    with pytest.raises(ValueError, match='is not an ABO3 perovskite'):
        perovskite_sites(polymorphs('HfO2')['cubic'])
