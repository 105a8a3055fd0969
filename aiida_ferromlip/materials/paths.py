"""Structures the physics card compares a potential on (plain ASE/numpy): isotropically strained copies of a
parent phase (its equation of state) and collective displacement paths from the parent towards a polar phase.

The double well of a ferroelectric perovskite is the energy along a collective displacement of its B cation
(every Ti of BaTiO3 moved by ``d`` along [001], [011] or [111], the rest of the cubic cell fixed): the labeller's
well depth and position there are what a potential must reproduce (the BaTiO3-GAP paper's R-O-T-C physics; the minimalist paper's
soft-mode tests).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

#: Paths a material's card follows when the user gives none: parent phase, moving species, directions.
KNOWN_PATHS = {
    'BaTiO3': {'parent': 'Pm-3m', 'species': 'Ti',
               'directions': {'001': (0, 0, 1), '011': (0, 1, 1), '111': (1, 1, 1)}},
}


def scaled_to_lattice(atoms: Atoms, lattice: float) -> Atoms:
    """A copy of a pseudo-cubic ``atoms`` scaled isotropically so that its volume per formula unit is ``lattice³``
    (fractional coordinates kept)."""
    from aiida_ferromlip.materials.units import formula_units

    copy = atoms.copy()
    factor = (lattice**3 * formula_units(atoms) / atoms.get_volume()) ** (1 / 3)
    copy.set_cell(copy.cell.array * factor, scale_atoms=True)
    return copy


def strained_copies(atoms: Atoms, strains) -> list[Atoms]:
    """Copies of ``atoms`` with every lattice vector scaled by ``1 + strain`` (the points of an EOS)."""
    frames = []
    for strain in strains:
        copy = atoms.copy()
        copy.set_cell(copy.cell.array * (1 + float(strain)), scale_atoms=True)
        frames.append(copy)
    return frames


def collective_displacement_path(parent: Atoms, species: str, direction, displacements,
                                 supercell=(1, 1, 1)) -> list[Atoms]:
    """Images of ``parent`` (repeated to ``supercell``) with every ``species`` atom moved by ``d`` Å along the
    Cartesian ``direction``, one per ``d`` in ``displacements``.

    :raises ValueError: for a species the parent does not have, or a zero direction.
    """
    vector = np.asarray(direction, dtype=float)
    if not np.linalg.norm(vector):
        raise ValueError('the displacement direction must not be zero')
    vector /= np.linalg.norm(vector)
    cell = parent.repeat(tuple(int(n) for n in supercell))
    moving = np.array(cell.get_chemical_symbols()) == species
    if not moving.any():
        raise ValueError(f'the parent phase {parent.get_chemical_formula()} has no {species} to displace')
    images = []
    for d in displacements:
        image = cell.copy()
        image.positions[moving] += float(d) * vector
        images.append(image)
    return images


def random_path_frames(parent: Atoms, species: str, directions: dict, count: int, max_displacement: float,
                       supercell=(2, 2, 2), rattle: float = 0.01, strain: float = 0.01, seed: int = 0) -> list[Atoms]:
    """``count`` cells of ``parent`` (repeated to ``supercell``) with every ``species`` atom moved by a random
    ``d`` in [0, ``max_displacement``] along one of ``directions`` in turn, then rattled and strained a little:
    frames that teach a potential the double wells (keep the rattle small: a 0.04 Å rattle carries more energy than
    a well of a few meV/f.u.)."""
    from aiida_ferromlip.materials.perturb import rattled_strained

    rng = np.random.default_rng(seed)
    names = list(directions)
    frames = []
    for n in range(count):
        image = collective_displacement_path(parent, species, directions[names[n % len(names)]],
                                             [rng.uniform(0, max_displacement)], supercell)[0]
        frames += rattled_strained(image, 1, rattle=rattle, strain=strain, seed=seed + 100 + n)
    return frames
