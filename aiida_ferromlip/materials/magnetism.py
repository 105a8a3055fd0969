"""Collinear magnetic orders for DFT labels: which elements need one, and how a cell's sites split into kinds.

The minimalist paper labels BiFeO3 with G-type antiferromagnetic order on Fe: every Fe has its nearest Fe neighbours
antiparallel. For an arbitrary (distorted, rattled) cell the up/down assignment is a two-colouring of the graph
of nearest magnetic neighbours under periodic boundary conditions; a cell in which that graph has an odd cycle
(e.g. one pseudo-cubic cell along an axis, where Fe is its own neighbour) cannot hold the order and is refused.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

#: Elements whose open d/f shells make a spin-polarised label a physical choice the user must make.
MAGNETIC_ELEMENTS = frozenset({'V', 'Cr', 'Mn', 'Fe', 'Co', 'Ni', 'Cu', 'Ru', 'Rh', 'Os', 'Ir',
                               'Ce', 'Pr', 'Nd', 'Pm', 'Sm', 'Eu', 'Gd', 'Tb', 'Dy', 'Ho', 'Er', 'Tm', 'Yb'})

ORDERS = ('none', 'ferromagnetic', 'g-type')

#: Nearest neighbours are the pairs within this factor of the shortest magnetic–magnetic distance: wide enough
#: for rattled and rhombohedrally distorted cells, far below the √2 of the next shell in a perovskite.
NEIGHBOUR_TOLERANCE = 1.2


def magnetism_problems(symbols: set[str], magnetism: dict | None) -> list[str]:
    """Why ``magnetism`` (``{element: {'order': ..., 'moment': μB}}``) does not cover the magnetic ``symbols``."""
    magnetism = magnetism or {}
    problems = []
    for element in sorted(symbols & MAGNETIC_ELEMENTS):
        if element not in magnetism:
            problems.append(
                f'{element} is magnetic but no magnetic setting was chosen for it: give `magnetism` '
                f"{{'{element}': {{'order': 'g-type' | 'ferromagnetic' | 'none', 'moment': <μB>}}}}")
    for element, setting in magnetism.items():
        order = setting.get('order') if isinstance(setting, dict) else None
        if order not in ORDERS:
            problems.append(f'magnetism of {element}: `order` must be one of {", ".join(ORDERS)}, got {order!r}')
        elif order != 'none' and not isinstance(setting.get('moment'), (int, float)):
            problems.append(f'magnetism of {element}: order `{order}` needs a starting `moment` in μB')
    return problems


def cell_problems(atoms: Atoms, magnetism: dict | None) -> list[str]:
    """Why this cell cannot hold the antiferromagnetic orders of ``magnetism`` (settings with errors of their own
    are reported by :func:`magnetism_problems` instead)."""
    problems = []
    symbols = set(atoms.get_chemical_symbols())
    for element, setting in (magnetism or {}).items():
        if element in symbols and isinstance(setting, dict) and setting.get('order') == 'g-type':
            try:
                antiferromagnetic_signs(atoms, element)
            except ValueError as exception:
                problems.append(str(exception))
    return problems


def antiferromagnetic_signs(atoms: Atoms, element: str) -> np.ndarray:
    """+1/-1 per ``element`` site (in the order they appear) such that nearest neighbours are antiparallel.

    :raises ValueError: if the cell cannot hold the order (odd cycle of nearest neighbours).
    """
    sites = [i for i, symbol in enumerate(atoms.get_chemical_symbols()) if symbol == element]
    sublattice = atoms[sites]
    if len(sublattice) < 2:
        raise ValueError(f'G-type order needs at least two {element} sites in the cell, found {len(sublattice)}')
    first, second, distances = neighbor_list('ijd', sublattice, cutoff=_neighbour_cutoff(sublattice))
    shortest = distances.min()
    neighbours: dict[int, set[int]] = {i: set() for i in range(len(sublattice))}
    for i, j, d in zip(first, second, distances):
        if d <= NEIGHBOUR_TOLERANCE * shortest:
            neighbours[i].add(j)
    signs = np.zeros(len(sublattice), dtype=int)
    for start in range(len(sublattice)):
        if signs[start]:
            continue
        signs[start] = 1
        queue = deque([start])
        while queue:
            i = queue.popleft()
            for j in neighbours[i]:
                if signs[j] == signs[i]:
                    raise ValueError(
                        f'this cell cannot hold G-type order on {element}: sites {sites[i]} and {sites[j]} are '
                        f'nearest neighbours (through the periodic images) and would be parallel; use a supercell '
                        f'with an even number of pseudo-cubic cells along each axis (e.g. 2x2x2)')
                if not signs[j]:
                    signs[j] = -signs[i]
                    queue.append(j)
    return signs


def _neighbour_cutoff(sublattice: Atoms) -> float:
    # Large enough that every site sees its nearest neighbours through the periodic images, even in a one-site-
    # thick cell; neighbor_list needs a finite cutoff.
    lengths = sublattice.cell.lengths()
    return float(max(lengths.max(), 1.0)) * 1.01


def kinds_and_moments(atoms: Atoms, magnetism: dict | None) -> tuple[list[str], dict[str, float]]:
    """Kind name per site and the starting moment (μB) per kind for the chosen ``magnetism``.

    Sites of a G-type element become kinds ``<El>1`` (up) and ``<El>2`` (down); every other site keeps its
    element as kind. Moments are given for every kind (0 for non-magnetic ones), as aiida-quantumespresso wants.
    """
    symbols = atoms.get_chemical_symbols()
    kinds = list(symbols)
    moments = {symbol: 0.0 for symbol in symbols}
    for element, setting in (magnetism or {}).items():
        if element not in moments or setting['order'] == 'none':
            continue
        moment = float(setting['moment'])
        if setting['order'] == 'ferromagnetic':
            moments[element] = moment
            continue
        signs = antiferromagnetic_signs(atoms, element)
        sites = [i for i, s in enumerate(symbols) if s == element]
        for site, sign in zip(sites, signs):
            kinds[site] = f'{element}1' if sign > 0 else f'{element}2'
        del moments[element]
        moments[f'{element}1'], moments[f'{element}2'] = moment, -moment
    return kinds, moments


def is_spin_polarised(magnetism: dict | None, symbols: set[str]) -> bool:
    return any(setting['order'] != 'none' for element, setting in (magnetism or {}).items() if element in symbols)
