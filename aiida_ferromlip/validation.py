"""Checks on structures that must fail fast, before any labelling, fitting or MD job starts.

Pure functions on ASE/numpy so they run inside port validators (cheap, no AiiDA storage access).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

#: Closer than this (Å) two nuclei are unphysical for any labeller we support; the shortest bonds in
#: the oxides we target are ~1.7 Å (Fe-O, Ti-O), H-H in H2 is 0.74 Å.
DEFAULT_MIN_DISTANCE = 0.6


def cell_heights(cell) -> list[float]:
    """Distances between the opposite faces of a cell (Å), one per cell vector."""
    cell = np.asarray(cell, dtype=float)
    volume = abs(np.linalg.det(cell))
    return [float(volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3]))) for i in range(3)]


def cell_height(cell) -> float:
    """Smallest distance between opposite faces of a cell (Å): how far an atom is from its nearest own image
    along the thinnest direction."""
    return min(cell_heights(cell))


def min_interatomic_distance(atoms: Atoms) -> float:
    """Shortest distance between two atoms, periodic images included (``inf`` for a single isolated atom)."""
    if len(atoms) == 0:
        return float('inf')
    # A cutoff of 3 Å is enough to detect overlaps; the neighbour list handles small/skewed cells and images.
    _, _, distances = neighbor_list('ijd', atoms, 3.0, self_interaction=False)
    return float(distances.min()) if len(distances) else float('inf')


def structure_problems(
    atoms: Atoms,
    *,
    label: str = 'structure',
    supported_species: set[str] | None = None,
    labeller: str = 'the labeller',
    min_distance: float = DEFAULT_MIN_DISTANCE,
    require_periodic: bool = True,
) -> list[str]:
    """Return a human-readable list of everything wrong with ``atoms`` (empty if it is fine)."""
    problems = []
    if len(atoms) == 0:
        return [f'{label}: contains no atoms']
    if require_periodic and not all(atoms.pbc):
        problems.append(f'{label}: periodic boundary conditions are required in all three directions, got pbc={list(atoms.pbc)}')
    if all(atoms.pbc) and abs(atoms.cell.volume) < 1e-6:
        problems.append(f'{label}: the cell has zero volume')
    if supported_species is not None:
        unknown = sorted(set(atoms.get_chemical_symbols()) - set(supported_species))
        if unknown:
            problems.append(f'{label}: species {unknown} are not supported by {labeller}')
    if not problems:
        dmin = min_interatomic_distance(atoms)
        if dmin < min_distance:
            problems.append(
                f'{label}: atoms are {dmin:.3f} Å apart, closer than the physical minimum of {min_distance} Å'
            )
    return problems
