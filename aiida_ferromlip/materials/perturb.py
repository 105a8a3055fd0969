"""Random rattles and strains of a structure: the frames that seed a first fit before any MD has run."""

from __future__ import annotations

import numpy as np
from ase import Atoms


def rattled_strained(atoms: Atoms, count: int, *, rattle: float = 0.05, strain: float = 0.01,
                     seed: int = 0) -> list[Atoms]:
    """``count`` copies of ``atoms``, each with Gaussian displacements (σ = ``rattle`` Å) and a random symmetric
    strain (components σ = ``strain``), reproducibly from ``seed``."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        copy = atoms.copy()
        epsilon = rng.normal(scale=strain, size=(3, 3))
        copy.set_cell(copy.cell.array @ (np.eye(3) + (epsilon + epsilon.T) / 2), scale_atoms=True)
        copy.positions += rng.normal(scale=rattle, size=copy.positions.shape)
        frames.append(copy)
    return frames
