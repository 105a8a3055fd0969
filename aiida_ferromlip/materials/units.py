"""Counting formula units (plain ASE/numpy): energies per f.u. are the papers' unit."""

from __future__ import annotations

import math
from functools import reduce

import numpy as np
from ase import Atoms


def formula_units(atoms: Atoms) -> int:
    """Number of formula units in ``atoms``: the gcd of the species counts (8 for a 40-atom BaTiO3 cell)."""
    counts = np.unique(atoms.get_atomic_numbers(), return_counts=True)[1]
    return int(reduce(math.gcd, counts.tolist()))
