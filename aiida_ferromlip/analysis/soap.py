"""SOAP power-spectrum features (featomic) and farthest-point sampling (scikit-matter).

Used to pick GAP sparse environments (BaTiO3-GAP paper: FPS on SOAP) and, per structure, to select MD frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms


def soap_hypers(cutoff: float, max_radial: int, max_angular: int, atom_sigma: float = 0.5,
                smoothing: float = 0.5) -> dict:
    """featomic hyper-parameters matching gap_fit's ``soap cutoff= n_max= l_max= atom_sigma=`` options."""
    return {
        'cutoff': {'radius': float(cutoff), 'smoothing': {'type': 'ShiftedCosine', 'width': float(smoothing)}},
        'density': {'type': 'Gaussian', 'width': float(atom_sigma)},
        # featomic's max_radial is the largest index (n_max - 1 basis functions above 0).
        'basis': {'type': 'TensorProduct', 'max_angular': int(max_angular),
                  'radial': {'type': 'Gto', 'max_radial': int(max_radial) - 1}},
    }


def atomic_soap(frames: Sequence[Atoms], hypers: dict,
                species: Sequence[int] | None = None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per-centre-species SOAP power spectra: ``{Z: (features [n, D], samples [n, 2] = (frame, atom))}``.

    Rows are ordered frame by frame and, within a frame, by atom index: the order in which gap_fit enumerates
    the environments of a species-centred descriptor, so row ``i`` is gap_fit's environment ``i + 1``.
    Features are normalised to unit length (as GAP's dot-product kernel does). ``species`` fixes the neighbour
    types (default: those present) so that features of separate calls are comparable.
    """
    import featomic

    # Neighbour types must be the same for every frame so that feature vectors are comparable.
    if species is None:
        species = sorted({int(z) for atoms in frames for z in atoms.numbers})
    calculator = featomic.SoapPowerSpectrum(**hypers)
    descriptor = calculator.compute(list(frames))
    descriptor = descriptor.keys_to_properties(_neighbour_labels(species))
    result = {}
    for key, block in descriptor.items():
        samples = np.asarray(block.samples.values)[:, :2]
        order = np.lexsort((samples[:, 1], samples[:, 0]))
        values = np.asarray(block.values)[order]
        norms = np.linalg.norm(values, axis=1, keepdims=True)
        result[int(key['center_type'])] = (values / np.where(norms > 0, norms, 1.0), samples[order])
    return result


def _neighbour_labels(species):
    from metatensor import Labels

    pairs = [[a, b] for a in species for b in species if a <= b]
    return Labels(['neighbor_1_type', 'neighbor_2_type'], np.array(pairs, dtype=np.int32))


def farthest_point_sampling(features: np.ndarray, n_select: int, initialize: int | str = 0,
                            already_selected: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``n_select`` rows of ``features`` by FPS, and the distance of each pick to those before it.

    With ``already_selected`` (features of points already chosen, e.g. the current training set), the first
    pick is the row farthest from them and no pick can duplicate them: they seed the max-min distance.
    """
    from skmatter.sample_selection import FPS

    n_select = int(n_select)
    if n_select > len(features):
        raise ValueError(f'cannot select {n_select} points out of {len(features)}')
    if already_selected is None or len(already_selected) == 0:
        selector = FPS(n_to_select=n_select, initialize=initialize)
        selector.fit(features)
        picked = np.asarray(selector.selected_idx_)
        return picked, np.asarray(selector.hausdorff_at_select_)[picked]
    # Stack the existing points first and let FPS start from all of them: skmatter accepts a list of indices
    # to initialise with, and reports the distances of the new picks only after them.
    stacked = np.vstack([already_selected, features])
    n_old = len(already_selected)
    selector = FPS(n_to_select=n_old + n_select, initialize=list(range(n_old)))
    selector.fit(stacked)
    picked = np.asarray(selector.selected_idx_)[n_old:]
    return picked - n_old, np.asarray(selector.hausdorff_at_select_)[picked]
