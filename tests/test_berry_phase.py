"""Berry-phase polarization labels from pw.x (#12 part 1) and a polarization model trained on them.

The pure parts (reading pw.x's Berry-phase block, the band gap, the branch choice) are tested on a real pw.x 6.7
output (``data/pw_lberry_gdir3.out``: cubic BaTiO3 at 4 Å with Ti moved 0.1 Å along z, 3x3x6 strings) and on
numbers chosen to sit on either side of the tolerances. The work chains run real pw.x (the `fast` protocol).
"""

import pathlib

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import run_get_node
from ase.build import bulk
from scipy.spatial.transform import Rotation

from aiida_ferromlip.analysis.berry_phase import (
    BerryPhaseOutputError,
    band_gap,
    parse_berry_phase,
    reference_phases,
    unwrap_dipole,
)
from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.materials import perovskite_polymorph
from aiida_ferromlip.workflows.dft.berry_phase import (
    BerryPhaseWorkChain,
    PwBerryPhaseWorkChain,
    berry_input_problems,
    berry_phase_labels,
)
from aiida_ferromlip.workflows.polarization.model import PolarizationModelWorkChain

from .conftest import cubic_batio3
from .test_qe_label import pseudo_family, pw_code, upf_directory  # noqa: F401  (fixtures)

DATA = pathlib.Path(__file__).parent / 'data'


# ------------------------------------------------------------------------------------------------- reading
def test_parse_a_real_pw_berry_phase_output():
    parsed = parse_berry_phase((DATA / 'pw_lberry_gdir3.out').read_text())
    assert parsed['gdir'] == 3 and parsed['nppstr'] == 6 and parsed['mod_tot'] == 2
    assert parsed['ionic_phase'] == pytest.approx(0.3)  # Ti (Z=12) at z = 0.525: 6.3 modulo 2
    assert parsed['total_phase'] == pytest.approx(parsed['ionic_phase'] + parsed['electronic_phase'], abs=2e-5)
    assert parsed['phase'] == pytest.approx(parsed['total_phase'], abs=1e-5)  # the 7-decimal version of it
    assert parsed['direction'] == [0.0, 0.0, 1.0]
    assert parsed['quantum_e_bohr'] == pytest.approx(2 * 4.0 / 0.529177, rel=1e-4)  # MOD_TOT x |a3|
    # Ti moved by 0.1 Å gives a dipole of Z* x 0.1 e·Å along z: BaTiO3's anomalous Ti charge (~7)
    assert 6.0 < parsed['phase'] * 4.0 / 0.1 < 8.5


def test_outputs_without_a_berry_phase_are_refused():
    text = (DATA / 'pw_lberry_gdir3.out').read_text()
    with pytest.raises(BerryPhaseOutputError, match='no Berry-phase summary'):
        parse_berry_phase(text[:text.index('K-POINTS STRINGS USED')])
    with pytest.raises(BerryPhaseOutputError, match='lacks .*dipole_e_bohr'):
        parse_berry_phase(text[:text.index('VALUES OF POLARIZATION') + 200])


def test_band_gap_tells_an_insulator_from_a_metal():
    insulator = np.array([[-1.0, 0.0, 2.0, 3.0], [-0.5, 0.2, 1.8, 3.1]])
    assert band_gap(insulator, 4) == pytest.approx(1.6)      # two occupied bands: 1.8 - 0.2
    overlapping = np.array([[-1.0, 0.5, 0.6], [-1.0, 0.7, 0.4]])
    assert band_gap(overlapping, 4) < 0                      # band 2 at one k above band 3 at another: a metal
    with pytest.raises(ValueError, match='odd count'):
        band_gap(insulator, 5)
    with pytest.raises(ValueError, match='no empty band'):
        band_gap(insulator[:, :2], 4)


# ------------------------------------------------------------------------------------------ branch choice
def test_branch_choice_follows_the_born_model_and_flags_ambiguity():
    cell = np.diag([4.0, 4.0, 8.0])
    born = np.array([0.3, -0.2, 1.0])                        # e·Å; as phases: 0.075, -0.05, 0.125
    true = np.array([0.32, -0.25, 1.1])                      # what Berry gives on the right branch
    # pw.x folds the phases: along a3 the dipole 1.1 e·Å is 0.1375 of a3, reported one quantum lower
    reported = true @ np.linalg.inv(cell) + np.array([1.0, -1.0, -1.0])
    result = unwrap_dipole(cell, reported, np.zeros(3), born, tolerance=0.25)
    assert result['ok']
    np.testing.assert_allclose(result['dipole'], true, atol=1e-12)
    np.testing.assert_allclose(result['branch'], [1, -1, -1])
    # a centrosymmetric reference at 1/2 along a1: the dipole is counted from it
    result = unwrap_dipole(cell, reported + [0.5, 0, 0], np.array([0.5, 0, 0]), born)
    np.testing.assert_allclose(result['dipole'], true, atol=1e-12)
    # Berry and Born 0.3 quanta apart along a2: the branch cannot be told; flagged
    far = reported + np.array([0, 0.3, 0])
    assert not unwrap_dipole(cell, far, np.zeros(3), born, tolerance=0.25)['ok']
    assert unwrap_dipole(cell, far, np.zeros(3), born, tolerance=0.35)['ok']


def test_reference_must_be_centrosymmetric():
    np.testing.assert_allclose(reference_phases([1e-6, 0.4999, -0.5]), [0, 0.5, 0.5])
    with pytest.raises(ValueError, match='not centrosymmetric'):
        reference_phases([0.0, 0.1, 0.0])


# -------------------------------------------------------------------------------------------- bad input
def test_bad_inputs_are_refused_before_pw_runs(pseudo_family, pw_code):
    batio3 = orm.StructureData(ase=cubic_batio3())
    bitio3 = cubic_batio3()
    bitio3.symbols[0] = 'Bi'                                 # 15 + 12 + 18 = 45 valence electrons
    problems = berry_input_problems({'code': pw_code}, {'odd': orm.StructureData(ase=bitio3)})
    assert any('45 valence electrons' in p and 'metal' in p for p in problems)
    assert any('branch_tolerance' in p for p in berry_input_problems(
        {'code': pw_code, 'parameters': orm.Dict({'branch_tolerance': 0.5})}, {'a': batio3}))
    assert any('unknown Berry-phase parameters' in p for p in berry_input_problems(
        {'code': pw_code, 'parameters': orm.Dict({'npstr': 4})}, {'a': batio3}))

    def refused(structures, reference, match):
        builder = BerryPhaseWorkChain.get_builder_from_protocol(pw_code, structures, reference, protocol='fast')
        with pytest.raises(ValueError, match=match):
            run_get_node(builder)

    srtio3 = orm.StructureData(ase=perovskite_polymorph('Sr', 'Ti', 'Pm-3m'))
    refused({'a': batio3}, srtio3, 'no pseudopotential for Sr')
    refused({'reference': batio3}, batio3, 'is the key of the reference')
    refused({'a': orm.StructureData(ase=cubic_batio3().repeat((1, 1, 2)))}, batio3, "not made of the reference's atoms")
    rocksalt = orm.StructureData(ase=bulk('BaO', 'rocksalt', a=5.5))
    refused({'a': rocksalt}, rocksalt, 'needs perovskite frames')


# ------------------------------------------------------------------------------------- real pw.x runs
def test_metallic_frame_is_refused_before_any_berry_phase_run(pseudo_family, pw_code):
    """BaTiO2 (a BaTiO3 cell missing one O: 34 electrons, Ti d states at the Fermi level) is a metal."""
    atoms = cubic_batio3()
    del atoms[4]
    builder = PwBerryPhaseWorkChain.get_builder()
    inputs = BerryPhaseWorkChain.get_protocol_inputs('fast')
    builder.code = pw_code
    builder.structure = orm.StructureData(ase=atoms)
    builder.protocol = orm.Str(inputs['protocol'])
    builder.overrides = orm.Dict(inputs['overrides'])
    builder.parameters = orm.Dict(inputs['parameters'])
    _, node = run_get_node(builder)
    assert node.exit_status == PwBerryPhaseWorkChain.exit_codes.ERROR_METALLIC.status
    assert 'metallic' in node.exit_message and 'only defined for an insulator' in node.exit_message
    assert [c.base.attributes.get('process_label') for c in node.called] == ['PwBaseWorkChain']  # the SCF only


def displaced(rng, scale=0.08):
    atoms = cubic_batio3()
    atoms.positions += rng.normal(scale=scale, size=atoms.positions.shape)
    return atoms


@pytest.fixture
def patient_polling(pw_code):
    """The test computer asks the scheduler about its jobs with no pause by default (and writes each answer to the
    database); with 13 frames x 4 pw.x runs, ask every 2 s instead (restored afterwards)."""
    computer = pw_code.computer
    before = computer.get_minimum_job_poll_interval()
    computer.set_minimum_job_poll_interval(2.0)
    yield
    computer.set_minimum_job_poll_interval(before)


#: The held-out tolerance, derived before the cross-validated check existed from the docs run's 22 Berry-labelled
#: cells (docs/polarization.md): its learning curve gives 0.305 and 0.194 e·Å per cell at 7 and 12 training cells on a
#: 1.090 e·Å spread, i.e. 0.219 of the spread at the 10 cells each fold here trains on (12 frames, one held out, one
#: for the work chain's own validation); the RMSE over n held-out cells scatters by ~1/sqrt(2n) of itself (21 % for
#: n = 11), so the bound is two of those above: 0.219 x 1.43 = 0.31. The label noise is inside that learning curve:
#: both sides of every fold are pw.x labels at the same settings.
EXPECTED_HELD_OUT_FRACTION = (0.305 + (0.194 - 0.305) * (10 - 7) / (12 - 7)) / 1.090


def cross_validated_error(training_set, dipole_node) -> float:
    """Hold out each rattled cell in turn, train a PolarizationModel on every other frame (the Ti-only cell included),
    predict the held-out one: the RMSE over all rattled cells, as a fraction of their dipoles' spread (a model that
    predicts the mean scores ~1), must be below the bound derived above. The first fold's model must also rotate with
    the structure and its partial dipoles sum to the cell's."""
    keys = dipole_node.base.attributes.get('frame_keys')
    dipoles = dipole_node.get_array('dipoles')
    frames = training_set.get_frames(range(len(training_set)))
    rattled = [i for i, key in enumerate(keys) if key != 'ti_z']
    predicted, first = [], None
    for held_out in rattled:
        train = [i for i in range(len(keys)) if i != held_out]
        labels = orm.ArrayData()
        labels.set_array('dipoles', dipoles[train])
        labels.base.attributes.set('source', dipole_node.base.attributes.get('source'))
        builder = PolarizationModelWorkChain.get_builder()
        builder.training_set = TrainingSet(frames=[frames[i] for i in train])
        builder.dipoles = labels
        builder.parameters = orm.Dict({'num_sparse': 10, 'regularizer': 1e-2, 'validation_fraction': 0.1,
                                       'learning_curve_points': 2})
        fitted, node = run_get_node(builder)
        assert node.is_finished_ok, node.exit_message
        assert 'Berry phase' in fitted['metrics']['label_source']
        predicted.append(fitted['model'].predict(frames[held_out])[0])
        first = first or (fitted['model'], frames[held_out])
    errors = np.linalg.norm(np.array(predicted) - dipoles[rattled], axis=1)
    spread = np.sqrt(((dipoles[rattled] - dipoles[rattled].mean(axis=0)) ** 2).sum(axis=1).mean())
    fraction = float(np.sqrt((errors ** 2).mean()) / spread)
    n = len(rattled)
    bound = EXPECTED_HELD_OUT_FRACTION * (1 + 2 / np.sqrt(2 * n))
    assert fraction < bound, (fraction, bound, (errors / spread).round(2))
    model, atoms = first
    total, partials = model.predict(atoms)
    np.testing.assert_allclose(partials.sum(axis=0), total)
    rotation = Rotation.from_euler('zyx', [35, -20, 70], degrees=True).as_matrix()
    turned = atoms.copy()
    turned.positions = atoms.positions @ rotation.T
    turned.set_cell(atoms.cell.array @ rotation.T)
    np.testing.assert_allclose(model.predict(turned)[0], rotation @ total, atol=1e-9)
    return fraction


# 23 min of pw.x on two cores: with it the CI run (install + both tiers) came to ~85 of its 90 minutes, so it is in
# the manual tier (`pytest -m manual`), not run by CI; docs/polarization.md has its last results
@pytest.mark.manual
def test_polarization_model_trained_on_berry_phase_labels(pseudo_family, pw_code, patient_polling):
    """Acceptance of #12: QE Berry-phase labels of displaced 5-atom BaTiO3 cells train a polarization model that
    predicts held-out displacements and rotates with the structure. Also checks the labels' physics: the dipole
    of a cell with only Ti moved gives BaTiO3's anomalous Born charge of Ti."""
    rng = np.random.default_rng(12)
    structures = {f'rattled_{i:02d}': orm.StructureData(ase=displaced(rng)) for i in range(11)}
    ti_z = cubic_batio3()
    ti_z.positions[1, 2] += 0.12
    structures['ti_z'] = orm.StructureData(ase=ti_z)
    builder = BerryPhaseWorkChain.get_builder_from_protocol(pw_code, structures,
                                                           orm.StructureData(ase=cubic_batio3()), protocol='fast')
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    dipoles = results['dipoles'].get_array('dipoles')
    keys = results['dipoles'].base.attributes.get('frame_keys')
    assert len(results['training_set']) == len(dipoles) == len(keys) == 12   # none flagged at 0.08 Å
    assert 'Berry phase (pw.x lberry' in results['dipoles'].base.attributes.get('source')
    report = results['branch_report'].get_dict()
    assert report['reference_phases'] == [0.0, 0.0, 0.0] and report['flagged'] == {}

    # physics: Ti alone moved 0.12 Å along z -> M = Z*_Ti x 0.12 along z only (fast settings: Z* ~ 7.9)
    m_ti = dipoles[keys.index('ti_z')]
    assert 6.0 < m_ti[2] / 0.12 < 9.5 and np.abs(m_ti[:2]).max() < 1e-3
    # the SCF labels came along: energies and forces of the same pw.x runs
    frames = results['training_set'].get_frames(range(12))
    assert all(atoms.get_potential_energy() < -3000 for atoms in frames)   # eV, 5-atom BaTiO3 with these pseudos
    # Berry phase and the Born model agree to first order, not exactly
    residual = np.array([row['residual_quanta'] for row in report['frames'].values()])
    assert 1e-4 < np.abs(residual).max() < 0.1

    fraction = cross_validated_error(results['training_set'], results['dipoles'])
    print(f'cross-validated held-out RMSE: {fraction:.3f} of the spread')

    # a tolerance no residual meets flags every frame: nothing is trained on, and the report says why
    inputs = {link.link_label: link.node for link in
              results['dipoles'].creator.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()}
    strict = berry_phase_labels(**{**inputs, 'parameters': orm.Dict({'branch_tolerance': 1e-6})})
    assert 'dipoles' not in strict and len(strict['branch_report']['flagged']) == 12
    assert 'the branch is ambiguous' in next(iter(strict['branch_report']['flagged'].values()))
