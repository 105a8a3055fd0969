"""Polymorph builders (checked by spglib) and the structure checks used by port validators."""

import numpy as np
import pytest
import spglib
from ase import Atoms

from aiida_ferromlip.materials import batio3_polymorphs, glazer_perovskite, perovskite_polymorph, polymorphs, port_name
from aiida_ferromlip.materials.perovskites import PSEUDOCUBIC_2x2x2
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


@pytest.mark.parametrize('material, kind, expected', [
    ('PbZrO3', 'ranking', {'FiE': ('Ima2 (46)', 30), 'AFE80': ('Pnma (62)', 80), 'AFE40': ('Pbam (55)', 40),
                           'FE': ('R3c (161)', 10), 'cubic': ('Pm-3m (221)', 5)}),
    ('PbZrO3', 'training', {'R3c': ('R3c (161)', 40), 'Pnma': ('Pnma (62)', 40)}),
    ('BiFeO3', 'ranking', {'R3c': ('R3c (161)', 10), 'Pnma': ('Pnma (62)', 20), 'cubic': ('Pm-3m (221)', 5)}),
    ('BiFeO3', 'training', {'R3c': ('R3c (161)', 40), 'Pnma': ('Pnma (62)', 40)}),
    ('HfO2', 'ranking', {'monoclinic': ('P2_1/c (14)', 12), 'tetragonal': ('P4_2/nmc (137)', 12),
                         'oIII': ('Pca2_1 (29)', 12), 'oI': ('Pbca (61)', 24), 'cubic': ('Fm-3m (225)', 12)}),
    ('HfO2', 'training', {'P2_1/c': ('P2_1/c (14)', 24), 'P4_2/nmc': ('P4_2/nmc (137)', 24)}),
    ('BaTiO3', 'training', {'R3m': ('R3m (160)', 40), 'Amm2': ('Amm2 (38)', 40), 'P4mm': ('P4mm (99)', 40),
                            'Pm-3m': ('Pm-3m (221)', 40)}),
])
def test_shipped_polymorphs_have_their_space_groups(material, kind, expected):
    """The minimalist paper's phases (Tables I and II, and its training starts): spglib finds each space group, in the cell
    size of the literature (AFE40 = 40 atoms, FiE = 30, AFE80 = 80; HfO2 training cells 24 atoms)."""
    structures = polymorphs(material, kind)
    assert sorted(structures) == sorted(expected)
    for name, atoms in structures.items():
        group, size = expected[name]
        assert (space_group(atoms), len(atoms)) == (group, size), name
        assert structure_problems(atoms) == [], name  # no atoms too close


def test_glazer_builder_patterns():
    # a0a0c+ and a0a0c- in a 2x2x2 cell: P4/mbm and I4/mcm, the textbook single-tilt perovskites
    in_phase = glazer_perovskite('Sr', 'Ti', PSEUDOCUBIC_2x2x2, tilts=(0, 0, 6), senses=('-', '-', '+'))
    antiphase = glazer_perovskite('Sr', 'Ti', PSEUDOCUBIC_2x2x2, tilts=(0, 0, 6))
    assert space_group(in_phase) == 'P4/mbm (127)' and space_group(antiphase) == 'I4/mcm (140)'
    # octahedra rotate rigidly to first order: the in-plane Ti-O bonds stretch only by the second-order factor
    # sqrt(1 + theta^2), the apical ones not at all
    distances = antiphase.get_all_distances(mic=True)
    ti = [i for i, s in enumerate(antiphase.get_chemical_symbols()) if s == 'Ti']
    bonds = np.sort(distances[ti][:, [i for i, s in enumerate(antiphase.get_chemical_symbols()) if s == 'O']])[:, :6]
    theta = np.radians(6)
    assert np.allclose(bonds[:, :2], 2.0) and np.allclose(bonds[:, 2:], 2.0 * np.sqrt(1 + theta ** 2))
    with pytest.raises(ValueError, match='linearly dependent'):
        glazer_perovskite('Sr', 'Ti', [[1, 0, 0], [2, 0, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="rotation sense must be"):
        glazer_perovskite('Sr', 'Ti', PSEUDOCUBIC_2x2x2, tilts=(0, 0, 6), senses=('-', '-', 'x'))
    with pytest.raises(ValueError, match='unknown material `SrTiO3`'):
        polymorphs('SrTiO3')
    with pytest.raises(ValueError, match="kind must be 'ranking' or 'training'"):
        polymorphs('HfO2', 'md')
    assert port_name('P4_2/nmc') == 'P4_2_nmc' and port_name('Pm-3m') == 'Pm_3m'


def test_hfo2_training_cells_are_the_most_isotropic_doubling():
    """The minimalist-MLIP paper's HfO2 cell: 24 atoms, 'doubles the volume while keeping the cell as isotropic as
    possible'. The shipped cells are what ASE's search for the most cubic doubling finds, and far less elongated than
    a plain 2x1x1 doubling (10.1 x 5.1 x 5.2 Å)."""
    from ase.build import find_optimal_cell_shape

    from aiida_ferromlip.materials.fluorites import TRAINING_SUPERCELLS, hfo2_polymorphs

    ranking = hfo2_polymorphs('ranking')
    for name, conventional in (('P2_1/c', 'monoclinic'), ('P4_2/nmc', 'tetragonal')):
        found = find_optimal_cell_shape(ranking[conventional].cell, 2, 'sc', lower_limit=-2, upper_limit=2)
        assert np.array_equal(found, TRAINING_SUPERCELLS[name]) and round(abs(np.linalg.det(found))) == 2
        lengths = hfo2_polymorphs('training')[name].cell.lengths()
        assert lengths.max() / lengths.min() < 1.1  # a plain doubling: 2.0


@pytest.mark.parametrize('engine', ['qe', 'vasp'])
def test_minimalist_label_protocol_gives_the_papers_mesh_for_each_material(engine):
    """Methods of the minimalist-MLIP paper: 'a Γ-centered 3x3x3 k-point mesh for BaTiO3 and PbZrO3, and a 2x2x2
    mesh for BiFeO3 [40-atom cell]. For HfO2, we use a grid of 3x3x3 k-points for the considered 24-atom supercell.'
    Every training cell of each material, through the protocol's spacing for it, as the engines build the mesh."""
    from aiida import orm

    from aiida_ferromlip.workflows.label.base import LabelWorkChain
    from aiida_ferromlip.workflows.dft.per_frame import kpoints_distance_for
    from aiida_ferromlip.workflows.dft.vasp import gamma_mesh

    paper = {'BaTiO3': [3, 3, 3], 'PbZrO3': [3, 3, 3], 'BiFeO3': [2, 2, 2], 'HfO2': [3, 3, 3]}
    protocol = LabelWorkChain.get_protocol_inputs('minimalist')[engine]
    inputs = {'kpoints_distance_by_formula': orm.Dict(protocol['kpoints_distance_by_formula'])}
    for material, mesh in paper.items():
        for name, atoms in polymorphs(material, 'training').items():
            structure = orm.StructureData(ase=atoms)
            distance = kpoints_distance_for(inputs, structure)
            assert gamma_mesh(structure, distance).get_kpoints_mesh()[0] == mesh, (material, name)
