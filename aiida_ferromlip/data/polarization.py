"""``PolarizationModel``: a fitted SA-GPR dipole model (``analysis.polarization_model``) as a node, and the
calcfunctions that label frames with dipoles and fit the model with provenance.

Dipoles are cell dipoles in e·Å (size-extensive: the BaTiO3-GAP paper trains on total dipoles, not polarizations), one per
frame of a TrainingSet, in an ``ArrayData`` with the array ``dipoles`` [n_frames, 3].
"""

from __future__ import annotations

import io

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.protocols import default_inputs


class PolarizationModel(orm.ArrayData):
    """Sparse environments and weights per species; attributes ``hypers``, ``species``, ``zeta``, ``units``."""

    @classmethod
    def from_model(cls, model) -> PolarizationModel:
        node = cls()
        for z, sparse in model.sparse.items():
            for name in ('X', 's', 'b'):
                node.set_array(f'{name}_{z}', sparse[name])
        node.base.attributes.set_many({'hypers': model.hypers, 'species': model.species, 'zeta': model.zeta,
                                       'units': 'e*angstrom'})
        return node

    def model(self):
        from aiida_ferromlip.analysis.polarization_model import SparseDipoleModel

        species = self.base.attributes.get('species')
        sparse = {z: {name: self.get_array(f'{name}_{z}') for name in ('X', 's', 'b')}
                  for z in species if f'b_{z}' in self.get_arraynames()}
        return SparseDipoleModel(self.base.attributes.get('hypers'), species, self.base.attributes.get('zeta'), sparse)

    def predict(self, atoms):
        """(cell dipole [3], partial dipoles [n, 3]) in e·Å."""
        return self.model().predict(atoms)


@calcfunction
def born_charge_dipoles(training_set: TrainingSet) -> orm.ArrayData:
    """Cell dipoles (e·Å) of perovskite frames from Born effective charges x displacements
    (``materials.order_parameters.local_dipoles``): the linearised model the BaTiO3-GAP paper uses to bring Berry-phase
    polarizations to one branch, here as labels where no Berry-phase run exists — stated in the node."""
    frames = training_set.get_frames(range(len(training_set)))
    dipoles, source = born_dipoles(frames)
    result = orm.ArrayData()
    result.set_array('dipoles', dipoles)
    result.base.attributes.set_many({'units': 'e*angstrom', 'source': source})
    return result


def born_dipoles(frames) -> tuple[np.ndarray, str]:
    """The Born-charge cell dipole (e·Å) of each perovskite frame [n, 3], and what the charges are."""
    from aiida_ferromlip.materials import order_parameters

    charges, source = order_parameters.default_charges(frames[0])
    dipoles = np.array([order_parameters.local_dipoles(atoms, charges)[1].sum(axis=0) for atoms in frames])
    return dipoles.reshape(-1, 3), f'local dipoles with {source}'


#: The model's settings and their defaults: ``protocols/polarization_model.yaml`` (the only place they live).
DEFAULTS = default_inputs('polarization_model')['parameters']


@calcfunction
def fit_polarization_model(training_set: TrainingSet, dipoles: orm.ArrayData, parameters: orm.Dict) -> dict:
    """Fit the SA-GPR dipole model on a training split; validation RMSE per cell and per atom, a learning curve
    (the same fit on growing subsets of the training split, judged on the same validation frames), parity and
    learning-curve PNG."""
    from aiida_ferromlip.analysis.polarization_model import SparseDipoleModel
    from aiida_ferromlip.analysis.soap import soap_hypers
    from aiida_ferromlip.protocols import merged_settings

    settings = merged_settings(parameters, DEFAULTS, 'polarization-model')
    frames = training_set.get_frames(range(len(training_set)))
    targets = dipoles.get_array('dipoles')
    if targets.shape != (len(frames), 3):
        raise ValueError(f'{len(frames)} frames but dipoles of shape {targets.shape}')
    order = np.random.default_rng(settings['seed']).permutation(len(frames))
    n_validation = max(1, int(round(settings['validation_fraction'] * len(frames))))
    validation, train = order[:n_validation], order[n_validation:]
    if len(train) < 2:
        raise ValueError(f'{len(frames)} frames leave {len(train)} to train on')
    hypers = soap_hypers(settings['cutoff'], settings['max_radial'], settings['max_angular'], settings['atom_sigma'])
    species = sorted({int(z) for atoms in frames for z in atoms.numbers})

    def fitted(indices):
        return SparseDipoleModel(hypers, species, settings['zeta']).fit(
            [frames[i] for i in indices], targets[indices], settings['num_sparse'], settings['regularizer'])

    def errors(model):
        predicted = np.array([model.predict(frames[i])[0] for i in validation])
        residual = predicted - targets[validation]
        atoms = np.array([len(frames[i]) for i in validation])
        return predicted, float(np.sqrt((residual ** 2).sum(axis=1).mean())), \
            float(np.sqrt(((residual ** 2).sum(axis=1) / atoms ** 2).mean()))

    sizes = np.unique(np.linspace(max(2, len(train) // 2 ** (settings['learning_curve_points'] - 1)), len(train),
                                  settings['learning_curve_points']).astype(int))
    curve = [(int(size), *errors(fitted(train[:size]))[1:]) for size in sizes[:-1]]
    model = fitted(train)
    predicted, per_cell, per_atom = errors(model)
    curve.append((len(train), per_cell, per_atom))
    curve_array = orm.ArrayData()
    curve_array.set_array('learning_curve', np.array(curve))  # columns: training frames, RMSE per cell, per atom
    metrics = {'validation_frames': len(validation), 'training_frames': len(train),
               'rmse_per_cell_e_angstrom': per_cell, 'rmse_per_atom_e_angstrom': per_atom,
               'label_std_e_angstrom': float(np.sqrt(((targets - targets.mean(axis=0)) ** 2).sum(axis=1).mean())),
               'label_source': dipoles.base.attributes.get('source', None), 'settings': settings}
    png = _figure(targets[validation], predicted, np.array(curve))
    return {'model': PolarizationModel.from_model(model), 'metrics': orm.Dict(metrics), 'learning_curve': curve_array,
            'plot': orm.SinglefileData(io.BytesIO(png), filename='polarization_model.png')}


def _figure(reference, predicted, curve) -> bytes:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from aiida_ferromlip.analysis.plots import figure_png

    figure, (parity, learning) = plt.subplots(1, 2, figsize=(9, 4))
    for k, label in enumerate('xyz'):
        parity.scatter(reference[:, k], predicted[:, k], s=12, label=f'M$_{label}$')
    limits = [min(reference.min(), predicted.min()), max(reference.max(), predicted.max())]
    parity.plot(limits, limits, 'k--', lw=0.8)
    parity.set_xlabel('reference cell dipole (e·Å)')
    parity.set_ylabel('model (e·Å)')
    parity.legend(fontsize=8)
    learning.loglog(curve[:, 0], curve[:, 1], 'o-', label='per cell')
    learning.loglog(curve[:, 0], curve[:, 2], 's-', label='per atom')
    learning.set_xlabel('training frames')
    learning.set_ylabel('validation RMSE (e·Å)')
    learning.legend(fontsize=8)
    return figure_png(figure, dpi=90)
