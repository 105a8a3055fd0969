"""The SA-GPR cell-dipole model (BaTiO3-GAP paper): learns the dipoles of displaced 5-atom BaTiO3 cells, predicts a held-out
one, rotates with the structure, and is trained/validated by its work chain with provenance.

The labels here are Born-charge dipoles (no Berry-phase run exists yet): linear in the displacements, so a model
that learns them must capture how each atom's environment carries a vector.
"""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from scipy.spatial.transform import Rotation

from aiida_ferromlip.analysis.polarization_model import SparseDipoleModel
from aiida_ferromlip.analysis.soap import soap_hypers
from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.materials import perovskite_polymorph
from aiida_ferromlip.materials.order_parameters import cell_dipoles_from_partials, local_dipoles
from aiida_ferromlip.workflows.polarization.model import PolarizationModelWorkChain


def displaced_cells(count, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        atoms = perovskite_polymorph('Ba', 'Ti', 'Pm-3m', lattice=4.0)
        atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
        frames.append(atoms)
    return frames, np.array([local_dipoles(atoms)[1].sum(axis=0) for atoms in frames])


def test_model_predicts_held_out_dipoles_and_rotates_with_the_structure():
    frames, dipoles = displaced_cells(50)
    model = SparseDipoleModel(soap_hypers(4.5, 4, 3), [8, 22, 56], zeta=2).fit(frames[:40], dipoles[:40], 30, 1e-4)
    predicted = np.array([model.predict(atoms)[0] for atoms in frames[40:]])
    rmse = np.sqrt(((predicted - dipoles[40:]) ** 2).sum(axis=1).mean())
    spread = np.sqrt(((dipoles - dipoles.mean(axis=0)) ** 2).sum(axis=1).mean())
    assert rmse < 0.25 * spread                       # measured: ~0.1 of the spread
    total, partial = model.predict(frames[45])
    np.testing.assert_allclose(partial.sum(axis=0), total)
    # rotate the structure: the prediction rotates by the same matrix (to rounding)
    rotation = Rotation.from_euler('xyz', [20, 40, 60], degrees=True).as_matrix()
    turned = frames[45].copy()
    turned.positions = frames[45].positions @ rotation.T
    turned.set_cell(frames[45].cell.array @ rotation.T)
    np.testing.assert_allclose(model.predict(turned)[0], rotation @ total, atol=1e-9)
    # Ti-centred unit-cell dipoles from the partial dipoles add up to the cell dipole
    np.testing.assert_allclose(cell_dipoles_from_partials(frames[45], partial)[1].sum(axis=0), total)
    with pytest.raises(ValueError, match='no environments of atomic number'):
        model.predict(perovskite_polymorph('Pb', 'Ti', 'Pm-3m'))


def test_work_chain_trains_validates_and_stores_the_model():
    frames, _ = displaced_cells(30, seed=3)
    for atoms in frames:   # a TrainingSet needs labels; the dipole model ignores them
        from ase.calculators.singlepoint import SinglePointCalculator
        atoms.calc = SinglePointCalculator(atoms, energy=0.0, forces=np.zeros((len(atoms), 3)))
    builder = PolarizationModelWorkChain.get_builder()
    builder.training_set = TrainingSet(frames=frames)
    builder.parameters = orm.Dict({'num_sparse': 20, 'learning_curve_points': 3})
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    metrics = results['metrics'].get_dict()
    assert metrics['validation_frames'] == 6 and metrics['training_frames'] == 24
    assert metrics['rmse_per_cell_e_angstrom'] < 0.3 * metrics['label_std_e_angstrom']
    assert 'Born effective charges' in metrics['label_source']
    curve = results['learning_curve'].get_array('learning_curve')
    assert list(curve[:, 0]) == sorted(curve[:, 0]) and curve[-1, 0] == 24
    assert results['plot'].get_content('rb')[:4] == b'\x89PNG'
    stored = orm.load_node(results['model'].pk)          # the node rebuilds the same model
    np.testing.assert_allclose(stored.predict(frames[0])[0], results['model'].predict(frames[0])[0])


def test_the_batio3_gap_protocol_fits_the_papers_linear_kernel():
    """The BaTiO3 SOAP-GAP paper's eq. 15: K_ij = X_i X_j^T of the λ = 1 features, no λ = 0 factor (zeta 1). The
    protocol builds that model, whose kernel is the plain product of the features, and it learns the Born-charge
    dipoles (linear in the displacements) to the same standard as the default."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from aiida_ferromlip.analysis.polarization_model import kernel

    rng = np.random.default_rng(4)
    x_i, x_j = rng.normal(size=(3, 3, 5)), rng.normal(size=(2, 3, 5))
    s_i, s_j = rng.normal(size=(3, 4)), rng.normal(size=(2, 4))
    np.testing.assert_allclose(kernel(x_i, s_i, x_j, s_j, 1), np.einsum('iaq,jbq->ijab', x_i, x_j))

    frames, _ = displaced_cells(30, seed=3)
    for atoms in frames:
        atoms.calc = SinglePointCalculator(atoms, energy=0.0, forces=np.zeros((len(atoms), 3)))
    builder = PolarizationModelWorkChain.get_builder_from_protocol(
        TrainingSet(frames=frames), protocol='batio3_gap', overrides={'parameters': {'num_sparse': 20}})
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    assert results['model'].base.attributes.get('zeta') == 1
    metrics = results['metrics'].get_dict()
    assert metrics['rmse_per_cell_e_angstrom'] < 0.3 * metrics['label_std_e_angstrom']


def test_mismatched_dipoles_are_refused():
    frames, dipoles = displaced_cells(6)
    from ase.calculators.singlepoint import SinglePointCalculator
    for atoms in frames:
        atoms.calc = SinglePointCalculator(atoms, energy=0.0, forces=np.zeros((len(atoms), 3)))
    labels = orm.ArrayData()
    labels.set_array('dipoles', dipoles[:5])
    builder = PolarizationModelWorkChain.get_builder()
    builder.training_set = TrainingSet(frames=frames)
    builder.dipoles = labels
    with pytest.raises(ValueError, match='one 3-vector per frame'):
        run_get_node(builder)
