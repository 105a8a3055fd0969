"""Polymorph builders (checked by spglib) and the structure checks used by port validators."""

import numpy as np
import pytest
import spglib
from ase import Atoms

from aiida_ferromlip.materials import batio3_polymorphs, perovskite_polymorph
from aiida_ferromlip.validation import min_interatomic_distance, structure_problems


def space_group(atoms):
    return spglib.get_spacegroup((atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers), symprec=1e-3)


@pytest.mark.parametrize('phase, expected', [('R3m', 'R3m (160)'), ('Amm2', 'Amm2 (38)'),
                                             ('P4mm', 'P4mm (99)'), ('Pm-3m', 'Pm-3m (221)')])
def test_batio3_polymorph_symmetry(phase, expected):
    atoms = batio3_polymorphs()[phase]
    assert len(atoms) == 40 and atoms.get_chemical_formula() == 'Ba8O24Ti8'
    assert space_group(atoms) == expected


def test_unknown_phase():
    with pytest.raises(ValueError, match='unknown perovskite phase'):
        perovskite_polymorph('Ba', 'Ti', 'P6_3/mmc')


def test_structure_checks():
    good = perovskite_polymorph('Ba', 'Ti', 'P4mm')
    assert structure_problems(good, supported_species={'Ba', 'Ti', 'O'}) == []
    assert min_interatomic_distance(good) == pytest.approx(1.9, abs=0.15)

    close = good.copy()
    close.positions[1] = close.positions[2] + [0.1, 0, 0]
    assert 'closer than the physical minimum' in structure_problems(close)[0]

    molecule = good.copy()
    molecule.pbc = False
    assert 'periodic boundary conditions are required' in structure_problems(molecule)[0]

    assert "species ['Ti'] are not supported" in structure_problems(good, supported_species={'Ba', 'O'})[0]
    assert structure_problems(Atoms()) == ['structure: contains no atoms']
    assert np.isinf(min_interatomic_distance(Atoms('Ba', cell=np.eye(3) * 10, pbc=False)))
