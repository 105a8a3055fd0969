"""ABO3 perovskite polymorphs built from the cubic cell by a polar distortion along one pseudocubic axis.

BaTiO3's sequence R3m -> Amm2 -> P4mm -> Pm-3m (seed 003; seed 000 starts its training from R3m) differs by
the direction of the polarization: [111], [110], [001], none. Each polar phase is built the same way: the B
cation moves by ``b_shift`` along the polar axis, the oxygen cage by ``o_shift`` (opposite sign), and the cell
is strained by ``strain`` along that axis (cell' = cell (1 + strain p p^T)). The resulting space groups are
checked by spglib in the tests. The magnitudes (Ti-O relative shift ~0.14 Å, 1 % strain) are representative
of the experimental phases, not refined structures: these are starting points for MD and labelling, which
relax them anyway.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

#: Polar axis of each phase, in pseudocubic coordinates.
POLAR_AXES = {'Pm-3m': (0, 0, 0), 'P4mm': (0, 0, 1), 'Amm2': (1, 1, 0), 'R3m': (1, 1, 1)}

#: BaTiO3 phases from the ground state upwards in temperature (seed 003's R-O-T-C sequence).
BATIO3_PHASES = ('R3m', 'Amm2', 'P4mm', 'Pm-3m')


def perovskite_polymorph(
    a_site: str,
    b_site: str,
    phase: str,
    *,
    lattice: float = 4.00,
    b_shift: float = 0.08,
    o_shift: float = -0.06,
    strain: float = 0.01,
    supercell: tuple[int, int, int] = (1, 1, 1),
) -> Atoms:
    """One ABO3 polymorph (``phase`` a key of ``POLAR_AXES``), repeated to ``supercell``.

    :param lattice: cubic lattice parameter in Å (PBEsol BaTiO3: ~3.99-4.00 Å).
    :param b_shift: displacement of the B cation along the polar axis, Å.
    :param o_shift: displacement of every O along the polar axis, Å.
    :param strain: relative elongation of the cell along the polar axis.
    """
    if phase not in POLAR_AXES:
        raise ValueError(f'unknown perovskite phase `{phase}`; known: {", ".join(POLAR_AXES)}')
    axis = np.array(POLAR_AXES[phase], dtype=float)
    norm = np.linalg.norm(axis)
    axis = axis / norm if norm else axis

    fractional = np.array([[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    cell = lattice * np.eye(3)
    positions = fractional @ cell
    positions[1] += b_shift * axis
    positions[2:] += o_shift * axis
    deformation = np.eye(3) + strain * np.outer(axis, axis)
    atoms = Atoms(f'{a_site}{b_site}O3', positions=positions @ deformation, cell=cell @ deformation, pbc=True)
    atoms.info['phase'] = phase
    return atoms.repeat(supercell)


def batio3_polymorphs(supercell: tuple[int, int, int] = (2, 2, 2), **kwargs) -> dict[str, Atoms]:
    """BaTiO3's R3m, Amm2, P4mm and Pm-3m phases; the default 2x2x2 supercell has the papers' 40 atoms."""
    return {phase: perovskite_polymorph('Ba', 'Ti', phase, supercell=supercell, **kwargs) for phase in BATIO3_PHASES}
