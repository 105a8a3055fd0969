"""Quantum ESPRESSO labelling: pseudopotentials built with ld1.x, input generation, and real pw.x labels."""

import pathlib
import re

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase import Atoms

from aiida_ferromlip import pseudos
from aiida_ferromlip.materials.magnetism import antiferromagnetic_signs, kinds_and_moments, magnetism_problems
from aiida_ferromlip.provenance import labelling_calculations
from aiida_ferromlip.workflows.label.base import LabelWorkChain
from aiida_ferromlip.workflows.dft.qe import PW_PREPEND_TEXT, pw_builder, qe_input_problems

from .conftest import cubic_batio3, executable


@pytest.fixture(scope='session')
def upf_directory(tmp_path_factory):
    """UPFs generated once per test session (ld1.x, ~1 s per element)."""
    directory = tmp_path_factory.mktemp('upf')
    pseudos.generate(directory)
    return directory


@pytest.fixture
def pseudo_family(upf_directory):
    return pseudos.install_family(directory=upf_directory)


@pytest.fixture
def pw_code(aiida_code_installed):
    from aiida_ferromlip.cli.setup import ensure_unbound_mpirun

    code = aiida_code_installed(label='pw', default_calc_job_plugin='quantumespresso.pw',
                                filepath_executable=executable('pw.x'), prepend_text=PW_PREPEND_TEXT)
    ensure_unbound_mpirun(code.computer, echo=lambda message: None)  # as `make setup` sets the profile's computer
    return code


def bifeo3_cubic(repeat=(2, 2, 2)) -> Atoms:
    atoms = Atoms('BiFeO3', cell=np.eye(3) * 3.95, pbc=True,
                  scaled_positions=[[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])
    return atoms.repeat(repeat)


# ------------------------------------------------------------------------------------------- pseudopotentials
def test_rewrap_keeps_numbers_and_shortens_lines():
    numbers = [f'{x:.15E}' for x in np.linspace(-1, 1, 300)]
    text = '<PP_Q size="300">\n' + ' '.join(numbers) + '\n</PP_Q>\n'
    wrapped = pseudos.rewrap_long_lines(text)
    assert max(len(line) for line in wrapped.splitlines()) <= 200
    assert wrapped.split()[2:-1] == numbers  # same numbers, same order
    long_tag = '<PP_HEADER ' + 'a="1" ' * 60 + '/>'
    assert pseudos.rewrap_long_lines(long_tag) == long_tag + '\n'  # non-numeric lines are never touched


def test_generated_family_reads_in_pw_and_has_header_cutoffs(pseudo_family, upf_directory):
    assert sorted(pseudo_family.elements) == pseudos.available_elements()
    for path in upf_directory.glob('*rrkjus*.UPF'):
        assert max(len(line) for line in path.read_text().splitlines()) < 1024, path.name  # pw.x 6.7's limit
    cutoffs = pseudo_family.get_cutoffs()
    ti = next(upf_directory.glob('Ti.*rrkjus*.UPF'))
    assert cutoffs['Ti']['cutoff_wfc'] == pytest.approx(pseudos.suggested_cutoffs(ti)[0])
    assert 40 < cutoffs['Ti']['cutoff_wfc'] < 60 and cutoffs['Ti']['cutoff_rho'] > 400
    # idempotent: a second install returns the same family and generates nothing
    assert pseudos.install_family(directory=upf_directory).pk == pseudo_family.pk


def test_missing_ld1_is_a_clear_error(tmp_path):
    with pytest.raises(pseudos.PseudoGenerationError, match='not found: install Quantum ESPRESSO'):
        pseudos.generate(tmp_path, ld1='no-such-ld1.x')


# ------------------------------------------------------------------------------------------------ magnetism
def test_g_type_order_is_a_two_colouring_of_nearest_neighbours():
    atoms = bifeo3_cubic()
    atoms.rattle(0.05, seed=1)
    signs = antiferromagnetic_signs(atoms, 'Fe')
    assert sorted(signs) == [-1] * 4 + [1] * 4
    fe = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s == 'Fe']
    for a, sign_a in zip(fe, signs):
        for b, sign_b in zip(fe, signs):
            if a != b and atoms.get_distance(a, b, mic=True) < 4.5:  # nearest pseudo-cubic neighbours
                assert sign_a == -sign_b
    kinds, moments = kinds_and_moments(atoms, {'Fe': {'order': 'g-type', 'moment': 4.0}})
    assert {kinds[i] for i in fe} == {'Fe1', 'Fe2'} and moments['Fe1'] == -moments['Fe2'] == 4.0
    assert moments['Bi'] == moments['O'] == 0.0


def test_g_type_refuses_a_cell_that_cannot_hold_it():
    with pytest.raises(ValueError, match='cannot hold G-type order on Fe'):
        antiferromagnetic_signs(bifeo3_cubic((2, 2, 1)), 'Fe')


def test_magnetic_element_needs_a_chosen_setting():
    assert 'Fe is magnetic but no magnetic setting was chosen' in magnetism_problems({'Bi', 'Fe', 'O'}, {})[0]
    assert magnetism_problems({'Bi', 'Fe', 'O'}, {'Fe': {'order': 'none'}}) == []
    assert 'needs a starting `moment`' in magnetism_problems({'Fe'}, {'Fe': {'order': 'g-type'}})[0]
    assert magnetism_problems({'Ba', 'Ti', 'O'}, {}) == []


def test_five_atom_labels_use_one_mesh_for_every_strained_cell(pseudo_family, pw_code):
    """The `five_atom` label protocol gives every cell of the card's EOS (a +-2 %) the same Γ-centred 4x4x4 mesh at
    the family's cutoffs; the `fast` spacing gives these cells different meshes, the step in E(V) that kept the
    card's labeller side from being computed (docs/physics_card.md). A mesh that is not three positive integers is
    refused before any job."""
    def mesh(protocol, lattice):
        inputs = LabelWorkChain.get_protocol_inputs(protocol)['qe']
        inputs = {key: (orm.Dict(value) if isinstance(value, dict) else orm.to_aiida_type(value))
                  for key, value in inputs.items()}
        builder = pw_builder({**inputs, 'code': pw_code}, orm.StructureData(ase=cubic_batio3(lattice)))
        if 'kpoints' in builder:
            return builder.kpoints.get_kpoints_mesh(), builder.pw.parameters['SYSTEM'].get('ecutwfc')
        kpoints = orm.KpointsData()
        kpoints.set_cell_from_structure(builder.pw.structure)
        kpoints.set_kpoints_mesh_from_density(builder.kpoints_distance.value)
        return kpoints.get_kpoints_mesh(), builder.pw.parameters['SYSTEM'].get('ecutwfc')

    lattices = (3.92, 4.00, 4.08)
    five_atom = [mesh('five_atom', a) for a in lattices]
    assert all(m == ([4, 4, 4], [0.0, 0.0, 0.0]) for m, _ in five_atom)
    family = max(pseudo_family.get_cutoffs()[element]['cutoff_wfc'] for element in ('Ba', 'Ti', 'O'))
    assert all(cutoff == pytest.approx(family) for _, cutoff in five_atom)  # the family's, not `fast`'s 30 Ry
    assert len({tuple(mesh('fast', a)[0][0]) for a in lattices}) > 1  # a spacing: not one mesh

    builder = LabelWorkChain.get_builder_from_protocol(pw_code, {'cubic': orm.StructureData(ase=cubic_batio3())},
                                                       engine='qe', protocol='five_atom')
    with pytest.raises(ValueError, match='three positive integers'):  # refused as it is set, before any job
        builder.qe.kpoints_mesh = orm.List([4, 4])


# -------------------------------------------------------------------------------------------- bad QE inputs
def test_bad_qe_inputs_fail_before_any_calculation(pseudo_family, pw_code):
    batio3 = {'cubic': orm.StructureData(ase=cubic_batio3())}
    srtio3 = {'sto': orm.StructureData(ase=Atoms('SrTiO3', cell=np.eye(3) * 3.9, pbc=True, scaled_positions=[
        [0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]]))}
    bifeo3 = {'bfo': orm.StructureData(ase=bifeo3_cubic())}

    assert 'no pseudopotential for Sr' in qe_input_problems({'code': pw_code}, srtio3)
    assert 'is not installed: run `ferromlip pseudos install`' in qe_input_problems(
        {'pseudo_family': orm.Str('SSSP/1.3/PBEsol/efficiency')}, batio3)
    assert 'Fe is magnetic but no magnetic setting' in qe_input_problems({}, bifeo3)
    assert 'cannot hold G-type order' in qe_input_problems(
        {'magnetism': orm.Dict({'Fe': {'order': 'g-type', 'moment': 4.0}})},
        {'bfo': orm.StructureData(ase=bifeo3_cubic((2, 2, 1)))})
    assert qe_input_problems({}, batio3) is None

    # a family that recommends no cutoffs is refused unless the overrides give both
    from aiida_pseudo.data.pseudo import UpfData
    from aiida_pseudo.groups.family import CutoffsPseudoPotentialFamily
    bare = CutoffsPseudoPotentialFamily(label='bare-family').store()
    bare.add_nodes([pseudo_family.get_pseudo(element) for element in ('Ba', 'Ti', 'O')])
    assert all(isinstance(p, UpfData) for p in bare.nodes)
    assert 'recommends no cutoffs' in qe_input_problems({'pseudo_family': orm.Str('bare-family')}, batio3)
    overrides = orm.Dict({'pw': {'parameters': {'SYSTEM': {'ecutwfc': 30, 'ecutrho': 240}}}})
    assert qe_input_problems({'pseudo_family': orm.Str('bare-family'), 'overrides': overrides}, batio3) is None

    # the same checks guard the LabelWorkChain before it launches anything
    builder = LabelWorkChain.get_builder_from_protocol(pw_code, bifeo3, engine='qe', protocol='fast')
    with pytest.raises(ValueError, match='Fe is magnetic but no magnetic setting'):
        run_get_node(builder)


def test_minimalist_inputs_for_bifeo3_reach_the_pw_input_file(pseudo_family, pw_code, tmp_path, monkeypatch):
    """G-type kinds, Hubbard U in pw.x 6.x syntax, spin polarisation and k-points by density, as written."""
    from aiida.engine import run
    from aiida_quantumespresso.calculations.pw import PwCalculation

    monkeypatch.chdir(tmp_path)  # a dry run writes its folder under the working directory
    protocol = LabelWorkChain.get_protocol_inputs('minimalist')['qe']
    inputs = {key: (orm.Dict(value) if isinstance(value, dict) else orm.to_aiida_type(value))
              for key, value in protocol.items()}
    structure = orm.StructureData(ase=bifeo3_cubic())
    builder = pw_builder({**inputs, 'code': pw_code}, structure)
    system = builder.pw.parameters['SYSTEM']
    assert system['nspin'] == 2 and system['lda_plus_u'] is True
    assert system['hubbard_u'] == {'Fe1': 4.0, 'Fe2': 4.0}
    assert system['starting_magnetization']['Fe1'] == -system['starting_magnetization']['Fe2'] > 0
    assert system['ecutwfc'] == pytest.approx(pseudo_family.get_cutoffs()['Fe']['cutoff_wfc'])  # the largest
    assert builder.kpoints_distance.value == 0.5  # the protocol's spacing for BiFeO3
    assert builder.pw.structure.creator.process_label == 'magnetic_structure'  # provenance of the kinds

    pw_inputs = dict(builder.pw)
    pw_inputs['kpoints'] = orm.KpointsData()
    pw_inputs['kpoints'].set_cell_from_structure(builder.pw.structure)
    pw_inputs['kpoints'].set_kpoints_mesh_from_density(builder.kpoints_distance.value)
    assert pw_inputs['kpoints'].get_kpoints_mesh()[0] == [2, 2, 2]  # the paper's BiFeO3 mesh on its 40-atom cell
    pw_inputs['metadata'] = {'dry_run': True, 'store_provenance': False, 'options': {
        'resources': {'num_machines': 1}, 'withmpi': False}}
    run(PwCalculation, **pw_inputs)
    written = next(pathlib.Path(p) for p in pathlib.Path('submit_test').glob('*/aiida.in'))  # dry-run folder
    text = written.read_text()
    species = re.search(r'ATOMIC_SPECIES\n(.*?)\nATOMIC_POSITIONS', text, re.S).group(1).split('\n')
    index = {line.split()[0]: i + 1 for i, line in enumerate(species)}  # pw.x numbers species in card order
    assert 'lda_plus_u = .true.' in text
    for kind, sign in (('Fe1', 1), ('Fe2', -1)):
        assert float(re.search(rf'hubbard_u\({index[kind]}\) =\s*(\S+)', text).group(1).replace('d', 'e')) == 4.0
        moment = float(re.search(rf'starting_magnetization\({index[kind]}\) =\s*(\S+)', text).group(1).replace('d', 'e'))
        assert np.sign(moment) == sign
    assert f'hubbard_u({index["Bi"]})' not in text


# --------------------------------------------------------------------------------------------- real pw.x
def _ti_displaced(dz: float, a: float = 4.0) -> orm.StructureData:
    atoms = cubic_batio3(a)
    atoms.positions[1, 2] += dz
    return orm.StructureData(ase=atoms)


def test_pw_labels_batio3_with_consistent_forces_stress_and_provenance(pseudo_family, pw_code):
    """5-atom BaTiO3 through pw.x: ΣF = 0, Ti force = -dE/dz by finite differences, stress responds to strain."""
    d, h = 0.08, 0.02
    strained = {}
    for name, scale in (('compressed', 0.98), ('expanded', 1.02)):
        atoms = cubic_batio3(4.0 * scale)
        strained[name] = orm.StructureData(ase=atoms)
    structures = {'ti_d': _ti_displaced(d), 'ti_d_plus': _ti_displaced(d + h), 'ti_d_minus': _ti_displaced(d - h),
                  **strained}
    builder = LabelWorkChain.get_builder_from_protocol(pw_code, structures, engine='qe', protocol='fast')
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    training_set = results['training_set']
    frames = {o['frame_key']: training_set.get_frame(i) for i, o in enumerate(training_set.origins)}
    assert sorted(frames) == sorted(structures)

    forces = frames['ti_d'].get_forces()
    assert np.abs(forces.sum(axis=0)).max() < 1e-3  # Newton's third law survives the parsing
    fd = -(frames['ti_d_plus'].get_potential_energy() - frames['ti_d_minus'].get_potential_energy()) / (2 * h)
    assert abs(forces[1, 2]) > 0.05  # the test is meaningless if the force vanishes
    assert forces[1, 2] == pytest.approx(fd, rel=0.05, abs=0.01)

    # stress present and with ASE's sign: compressing the cell makes it push outwards (more negative stress)
    compressed, expanded = frames['compressed'].get_stress(), frames['expanded'].get_stress()
    assert np.all(np.isfinite(compressed)) and np.all(np.isfinite(expanded))
    assert compressed[:3].mean() < expanded[:3].mean()

    # provenance: the TrainingSet leads to every PwCalculation, and each frame's origin names its own
    calcs = labelling_calculations(training_set)
    assert {c.process_type for c in calcs} == {'aiida.calculations:quantumespresso.pw'}
    assert {c.uuid for c in calcs} == {o['process_uuid'] for o in training_set.origins}
    for origin in training_set.origins:
        assert orm.load_node(origin['process_uuid']).inputs.structure.uuid == structures[origin['frame_key']].uuid

    cost = results['cost'].get_dict()
    report = orm.load_node(cost['batches'][0]['pk']).outputs.report.get_dict()
    assert report['scf_iterations_total'] >= 5 and report['wall_time_total_s'] > 0
    assert set(report['frames']) == set(structures)


def test_the_loops_paper_protocols_label_with_the_papers_dft_settings(pw_code):
    """The minimalist loop labels with the minimalist-MLIP paper's settings (its per-material meshes, U = 4 eV and
    G-type order on Fe), the batio3_gap loop with the BaTiO3 SOAP-GAP paper's (the family's cutoffs); only `fast`
    keeps the 30/240 Ry test cutoffs."""
    from aiida_ferromlip.workflows.loop.active_learning import ActiveLearningWorkChain

    def qe(protocol, material):
        builder = ActiveLearningWorkChain.get_builder_from_protocol(pw_code, pw_code, pw_code, material=material,
                                                                    protocol=protocol, engine='qe')
        return builder.label.qe

    def cutoff(inputs):
        overrides = inputs['overrides'].get_dict() if 'overrides' in inputs else {}
        return overrides.get('pw', {}).get('parameters', {}).get('SYSTEM', {}).get('ecutwfc')

    minimalist = qe('minimalist', 'BiFeO3')
    assert minimalist['hubbard_u'].get_dict() == {'Fe': 4.0}
    assert minimalist['magnetism'].get_dict()['Fe']['order'] == 'g-type'
    assert minimalist['kpoints_distance_by_formula'].get_dict()['BiFeO3'] == 0.5
    assert cutoff(minimalist) is None  # the family's recommended cutoffs
    batio3_gap = qe('batio3_gap', 'BaTiO3')
    assert cutoff(batio3_gap) is None and batio3_gap['protocol'].value == 'balanced'
    assert cutoff(qe('fast', 'BaTiO3')) == 30
