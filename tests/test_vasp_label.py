"""VASP labelling without VASP: the minimalist paper's inputs as aiida-vasp writes them, clear errors, vasprun.xml reading."""

import pathlib
import re
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase import Atoms
from ase.units import GPa

from aiida_ferromlip.workflows.label.base import LabelWorkChain
from aiida_ferromlip.workflows.dft.vasp import (
    MINIMALIST_POTCARS,
    input_files,
    training_set_from_vasp,
    vasp_input_problems,
    vasp_inputs,
)

from .conftest import cubic_batio3

DATA = pathlib.Path(__file__).parent / 'data'


def bifeo3_40() -> Atoms:
    atoms = Atoms('BiFeO3', cell=np.eye(3) * 3.95, pbc=True,
                  scaled_positions=[[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])
    return atoms.repeat((2, 2, 2))


@pytest.fixture
def vasp_code(aiida_code_installed):
    # A code record is all the input generation needs; VASP itself is licensed and absent here.
    return aiida_code_installed(label='vasp', default_calc_job_plugin='vasp.vasp', filepath_executable='/bin/true')


def test_missing_code_or_potcar_family_says_what_to_set_up(vasp_code):
    structures = {'cubic': orm.StructureData(ase=cubic_batio3())}
    problems = vasp_input_problems({}, structures)
    assert 'no VASP code' in problems and 'verdi code create' in problems
    assert 'no POTCAR family' in problems and 'vasp-potcar uploadfamily' in problems
    problems = vasp_input_problems({'code': vasp_code, 'potential_family': orm.Str('PBE.54')}, structures)
    assert 'POTCAR family `PBE.54` is not installed' in problems
    assert 'no POTCAR chosen for Sr' in vasp_input_problems(
        {'code': vasp_code}, {'sto': orm.StructureData(ase=Atoms('SrO', cell=np.eye(3) * 4, pbc=True,
                                                                 scaled_positions=[[0, 0, 0], [.5, .5, .5]]))})
    assert 'Fe is magnetic but no magnetic setting' in vasp_input_problems(
        {'code': vasp_code}, {'bfo': orm.StructureData(ase=bifeo3_40())})

    # and the LabelWorkChain refuses before launching anything
    builder = LabelWorkChain.get_builder_from_protocol(vasp_code, structures, engine='vasp', protocol='minimalist')
    with pytest.raises(ValueError, match='no POTCAR family'):
        run_get_node(builder)


def test_minimalist_batio3_inputs():
    """40-atom BaTiO3: PBEsol, 500 eV, Γ-centred 3x3x3, the minimalist paper's PAW valences, no U, no spin."""
    protocol = LabelWorkChain.get_protocol_inputs('minimalist')['vasp']
    inputs = {'kpoints_distance': orm.Float(protocol['kpoints_distance']), 'hubbard_u': orm.Dict(protocol['hubbard_u']),
              'magnetism': orm.Dict(protocol['magnetism']), 'potential_family': orm.Str('PBE.54')}
    structure = orm.StructureData(ase=cubic_batio3().repeat((2, 2, 2)))
    built = vasp_inputs(inputs, structure)
    files = input_files(built)
    incar = files['INCAR'].upper()
    assert re.search(r'ENCUT\s*=\s*500', incar) and re.search(r'GGA\s*=\s*PS', incar)
    assert 'LDAU' not in incar and 'MAGMOM' not in incar and 'ISPIN' not in incar
    assert re.search(r'IBRION\s*=\s*-1', incar) and re.search(r'NSW\s*=\s*0', incar)
    kpoints = files['KPOINTS'].splitlines()
    assert kpoints[2].strip().lower().startswith('g') and kpoints[3].split() == ['3', '3', '3']
    assert built['potential_mapping'].get_dict() == {'Ba': 'Ba_sv', 'Ti': 'Ti_sv', 'O': 'O'}
    assert len(files['POSCAR'].splitlines()) >= 8 + 40


def test_minimalist_bifeo3_inputs_have_u_and_g_type_moments():
    protocol = LabelWorkChain.get_protocol_inputs('minimalist')['vasp']
    inputs = {'kpoints_distance': orm.Float(0.45),  # the minimalist paper's 2x2x2 for BiFeO3
              'hubbard_u': orm.Dict(protocol['hubbard_u']), 'magnetism': orm.Dict(protocol['magnetism'])}
    structure = orm.StructureData(ase=bifeo3_40())
    built = vasp_inputs(inputs, structure)
    files = input_files(built)
    incar = built['parameters']['incar']
    assert incar['ispin'] == 2 and incar['ldau'] is True and incar['ldautype'] == 2
    # U = 4 eV on the d shell of both Fe kinds, nothing elsewhere; one LDAU entry per POTCAR block
    order = _poscar_species(built['structure'])
    for kind, l_value, u_value in zip(order, incar['ldaul'], incar['ldauu']):
        if kind.startswith('Fe'):
            assert (l_value, u_value) == (2, 4.0)
        else:
            assert (l_value, u_value) == (-1, 0.0)
    moments = incar['magmom']
    assert sorted(m for m in moments if m) == [-4.0] * 4 + [4.0] * 4 and moments.count(0.0) == 32
    assert re.search(r'MAGMOM\s*=', files['INCAR'].upper())
    assert files['KPOINTS'].splitlines()[3].split() == ['2', '2', '2']
    assert set(built['potential_mapping'].get_dict().values()) == {'Bi_d', 'Fe_pv', 'O'}
    assert MINIMALIST_POTCARS['Fe'] == 'Fe_pv'


def _poscar_species(structure):
    from aiida_vasp.parsers.content_parsers.potcar import MultiPotcarIo

    return MultiPotcarIo.potentials_order(structure)


def test_vasprun_becomes_a_training_set_with_ase_units():
    """A real VASP vasprun.xml (from ASE's test data): free energy, forces in eV/Å, stress kB -> eV/Å³ with sign."""
    text = (DATA / 'vasprun_pstress.xml').read_text()
    folder = orm.FolderData()
    folder.base.repository.put_object_from_bytes(text.encode(), 'vasprun.xml')
    training_set = training_set_from_vasp(frames=orm.Dict({'keys': ['diamond'], 'structure_uuids': [None]}),
                                          retrieved_0=folder)
    frame = training_set.get_frame(0)

    root = ElementTree.fromstring(text)
    calculation = root.findall('calculation')[-1]
    free_energy = float(calculation.find("energy/i[@name='e_fr_energy']").text)
    forces = np.array([[float(x) for x in v.text.split()] for v in calculation.find("varray[@name='forces']")])
    stress_kb = np.array([[float(x) for x in v.text.split()] for v in calculation.find("varray[@name='stress']")])
    # this run used PSTRESS = 1 kB, so VASP's e_fr_energy is an enthalpy: the label is the energy without p*V
    pstress_kb = float(root.find(".//incar/i[@name='PSTRESS']").text)
    assert frame.get_potential_energy() == pytest.approx(free_energy - pstress_kb * 0.1 * GPa * frame.get_volume())
    assert np.allclose(frame.get_forces(), forces)
    # VASP writes the stress in kB with pressure positive; ASE's convention is the opposite sign in eV/Å³
    assert np.allclose(training_set.get_array('stresses')[0], -stress_kb * 0.1 * GPa)
    assert training_set.origins[0]['labeller'] == 'vasp' and training_set.origins[0]['frame_key'] == 'diamond'
