"""Symmetry-adapted Gaussian process regression (SA-GPR) of a cell dipole as a sum of atom-centred vectors (BaTiO3-GAP paper,
eqs. 13-15). No AiiDA: the data node ``data.polarization.PolarizationModel`` stores what this fits.

Features: featomic's equivariant power spectrum of the atom-centred density (``EquivariantPowerSpectrum`` of a
``SphericalExpansion``), the lambda = 1, sigma = +1 block — for each atom a 3 x Q matrix X_i whose columns rotate as
vectors — and the lambda = 0 block as invariants s_i. Both are normalised per atom.

Kernel between atom i and a sparse environment j of the same species (a 3 x 3 tensor):
    K_ij = X_i X_j^T (s_i . s_j)^(zeta - 1)
so K_{R i, j} = R K_ij for a rotation R. The partial dipole of atom i is mu_i = sum_j K_ij b_j with one 3-vector
weight b_j per sparse environment; the cell dipole is sum_i mu_i. Training (subset of regressors) minimises
|A b - M|^2 + regularizer b^T K_MM b over frames' dipoles M, A the per-frame sums of K. Sparse environments are
picked per species by farthest-point sampling on the invariants (BaTiO3-GAP paper: FPS).

Real spherical harmonics order m = -1, 0, +1 as (y, z, x): ``_CARTESIAN`` turns the lambda = 1 block into x, y, z
(checked by rotating a structure in the tests).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms

_CARTESIAN = [2, 0, 1]  # m = +1 -> x, m = -1 -> y, m = 0 -> z


def calculator(hypers: dict, species: Sequence[int]):
    import featomic
    from featomic.clebsch_gordan import EquivariantPowerSpectrum

    return EquivariantPowerSpectrum(featomic.SphericalExpansion(**hypers), neighbor_types=[int(z) for z in species])


def atom_features(frames: Sequence[Atoms], hypers: dict, species: Sequence[int]) -> list[dict[int, tuple]]:
    """Per frame, per centre species: (atom indices, X [n, 3, Q] normalised, s [n, P] normalised)."""
    spectrum = calculator(hypers, species).compute(list(frames), neighbors_to_properties=True)
    result = [{} for _ in frames]
    for key, block in spectrum.items():
        if key['o3_sigma'] != 1 or key['o3_lambda'] not in (0, 1):
            continue
        samples = np.asarray(block.samples.values)[:, :2]
        values = np.asarray(block.values)
        for frame in np.unique(samples[:, 0]):
            rows = np.flatnonzero(samples[:, 0] == frame)
            rows = rows[np.argsort(samples[rows, 1])]
            entry = result[frame].setdefault(int(key['center_type']), {})
            entry['atoms'] = samples[rows, 1]
            if key['o3_lambda'] == 1:
                x = values[rows][:, _CARTESIAN, :]
                norms = np.linalg.norm(x.reshape(len(x), -1), axis=1)
                entry['X'] = x / np.where(norms > 0, norms, 1.0)[:, None, None]
            else:
                s = values[rows][:, 0, :]
                norms = np.linalg.norm(s, axis=1)
                entry['s'] = s / np.where(norms > 0, norms, 1.0)[:, None]
    return [{z: (e['atoms'], e['X'], e['s']) for z, e in frame.items()} for frame in result]


def kernel(x_i: np.ndarray, s_i: np.ndarray, x_j: np.ndarray, s_j: np.ndarray, zeta: int) -> np.ndarray:
    """K [n_i, n_j, 3, 3] between atoms i and sparse environments j of one species."""
    tensor = np.einsum('iaq,jbq->ijab', x_i, x_j)
    if zeta == 1:
        return tensor
    return tensor * ((s_i @ s_j.T) ** (zeta - 1))[:, :, None, None]


class SparseDipoleModel:
    """The fitted model: per species the sparse environments (X, s) and their weights b."""

    def __init__(self, hypers: dict, species: Sequence[int], zeta: int = 1, sparse: dict | None = None):
        self.hypers, self.species, self.zeta = hypers, [int(z) for z in species], int(zeta)
        self.sparse = sparse or {}  # Z -> {'X': [J, 3, Q], 's': [J, P], 'b': [J, 3]}

    # ------------------------------------------------------------------------------------------------- fit
    def fit(self, frames: Sequence[Atoms], dipoles: np.ndarray, num_sparse: int = 50, regularizer: float = 1e-3,
            jitter: float = 1e-8) -> SparseDipoleModel:
        from aiida_ferromlip.analysis.soap import farthest_point_sampling

        dipoles = np.asarray(dipoles, dtype=float)
        if dipoles.shape != (len(frames), 3):
            raise ValueError(f'expected one dipole (3 numbers) per frame: {len(frames)} frames, shape {dipoles.shape}')
        features = atom_features(frames, self.hypers, self.species)
        self.sparse = {}
        for z in self.species:
            pool_x = [f[z][1] for f in features if z in f]
            pool_s = [f[z][2] for f in features if z in f]
            if not pool_x:
                continue
            pool_x, pool_s = np.concatenate(pool_x), np.concatenate(pool_s)
            picked, _ = farthest_point_sampling(pool_s, min(num_sparse, len(pool_s)))
            self.sparse[z] = {'X': pool_x[picked], 's': pool_s[picked]}
        blocks = list(self.sparse)
        sizes = [len(self.sparse[z]['X']) for z in blocks]
        offsets = np.concatenate([[0], np.cumsum(sizes)]) * 3
        design = np.zeros((3 * len(frames), offsets[-1]))
        for f, frame in enumerate(features):
            for k, z in enumerate(blocks):
                if z in frame:
                    _, x, s = frame[z]
                    summed = kernel(x, s, self.sparse[z]['X'], self.sparse[z]['s'], self.zeta).sum(axis=0)
                    design[3 * f:3 * f + 3, offsets[k]:offsets[k + 1]] = summed.transpose(1, 0, 2).reshape(3, -1)
        k_mm = np.zeros((offsets[-1], offsets[-1]))
        for k, z in enumerate(blocks):
            block = kernel(self.sparse[z]['X'], self.sparse[z]['s'], self.sparse[z]['X'], self.sparse[z]['s'],
                           self.zeta)
            k_mm[offsets[k]:offsets[k + 1], offsets[k]:offsets[k + 1]] = block.transpose(0, 2, 1, 3).reshape(
                3 * sizes[k], 3 * sizes[k])
        # scale the regulariser with the data: a fraction of the design's typical diagonal
        scale = np.trace(design.T @ design) / max(design.shape[1], 1)
        system = design.T @ design + regularizer * scale * k_mm + jitter * scale * np.eye(offsets[-1])
        weights = np.linalg.solve(system, design.T @ dipoles.reshape(-1))
        for k, z in enumerate(blocks):
            self.sparse[z]['b'] = weights[offsets[k]:offsets[k + 1]].reshape(-1, 3)
        return self

    # --------------------------------------------------------------------------------------------- predict
    def predict(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
        """The cell dipole (3) and the partial dipole of every atom ([n, 3]), in the units of the training dipoles."""
        unknown = sorted(set(int(z) for z in atoms.numbers) - set(self.sparse))
        if unknown:
            raise ValueError(f'the model has no environments of atomic number(s) {unknown}')
        partial = np.zeros((len(atoms), 3))
        for z, (indices, x, s) in atom_features([atoms], self.hypers, self.species)[0].items():
            sparse = self.sparse[z]
            partial[indices] = np.einsum('ijab,jb->ia', kernel(x, s, sparse['X'], sparse['s'], self.zeta), sparse['b'])
        return partial.sum(axis=0), partial
