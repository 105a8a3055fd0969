"""ABO3 perovskite polymorphs built from the cubic cell by symmetry-breaking distortions.

Two builders. ``perovskite_polymorph``: a polar distortion along one pseudocubic axis (BaTiO3's phases).
``glazer_perovskite``: any supercell of the cubic cell with octahedral rotations in Glazer's notation (in-phase
``+``, antiphase ``-``, or a sense given per octahedron) and A/B-cation displacements given per site, which is what
the tilted and antipolar phases of PbZrO3 and BiFeO3 need. Every phase shipped is checked by spglib in the tests
(space group and cell size); the amplitudes are starting points, not refined structures: benchmarks and MD relax
them.


Polar phases: BaTiO3's sequence R3m -> Amm2 -> P4mm -> Pm-3m (BaTiO3-GAP paper; the minimalist paper starts its training from R3m) differs by
the direction of the polarization: [111], [110], [001], none. Each polar phase is built the same way: the B
cation moves by ``b_shift`` along the polar axis, the oxygen cage by ``o_shift`` (opposite sign), and the cell
is strained by ``strain`` along that axis (cell' = cell (1 + strain p p^T)). The resulting space groups are
checked by spglib in the tests. The magnitudes (Ti-O relative shift ~0.14 Å, 1 % strain) are representative
of the experimental phases, not refined structures: these are starting points for MD and labelling, which
relax them anyway.
"""

from __future__ import annotations

import itertools
from typing import Callable

import numpy as np
from ase import Atoms

#: Polar axis of each phase, in pseudocubic coordinates.
POLAR_AXES = {'Pm-3m': (0, 0, 0), 'P4mm': (0, 0, 1), 'Amm2': (1, 1, 0), 'R3m': (1, 1, 1)}

#: BaTiO3 phases from the ground state upwards in temperature (the BaTiO3-GAP paper's R-O-T-C sequence).
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


def glazer_perovskite(
    a_site: str,
    b_site: str,
    vectors,
    *,
    lattice: float = 4.0,
    tilts: tuple[float, float, float] = (0.0, 0.0, 0.0),
    senses: tuple = ('-', '-', '-'),
    a_shift: Callable[[int, int, int], np.ndarray] | None = None,
    b_shift: Callable[[int, int, int], np.ndarray] | None = None,
) -> Atoms:
    """An ABO3 supercell of the cubic perovskite with octahedral rotations and cation displacements.

    :param vectors: the supercell's lattice vectors (rows) in units of the cubic cell, integers.
    :param lattice: the pseudocubic lattice parameter, Å.
    :param tilts: rotation angle of the BO6 octahedra about x, y and z, degrees (linearised: each O moves by
        angle x (axis x B-O bond), which keeps B-O bonds to first order and is exact in symmetry).
    :param senses: per axis, ``'+'`` (in-phase: the same sense along that axis), ``'-'`` (antiphase), or a
        function ``(i, j, k) -> +1 | -1`` of the octahedron's cubic-cell index giving the sense along that axis
        (AFE80's ++-- rotation about c). Perpendicular to the axis the sense always alternates.
    :param a_shift, b_shift: functions ``(i, j, k) -> displacement (Å)`` of the A and B cation of cell (i, j, k).
    """
    vectors = np.asarray(vectors, dtype=int)
    size = int(round(abs(np.linalg.det(vectors))))
    if size == 0:
        raise ValueError(f'supercell vectors {vectors.tolist()} are linearly dependent')
    cells = _cells_inside(vectors, size)
    symbols, positions = [], []
    for cell in cells:
        a_position = cell.astype(float) + (a_shift(*cell) / lattice if a_shift else 0.0)
        b_position = cell + 0.5
        symbols += [a_site, b_site]
        positions += [a_position, b_position + (b_shift(*cell) / lattice if b_shift else 0.0)]
        for bond in 0.5 * np.eye(3):
            rotation = np.zeros(3)
            for axis in range(3):
                if tilts[axis]:
                    sense = _rotation_sense(cell, axis, senses[axis])
                    rotation += np.radians(tilts[axis]) * sense * np.cross(np.eye(3)[axis], bond)
            symbols.append('O')
            positions.append(b_position + bond + rotation)
    atoms = Atoms(symbols, positions=lattice * np.array(positions), cell=lattice * vectors, pbc=True)
    atoms.wrap()
    return atoms


def _cells_inside(vectors: np.ndarray, size: int) -> list[np.ndarray]:
    """The ``size`` cubic-cell indices whose origin lies inside the supercell spanned by ``vectors``."""
    to_fractional = np.linalg.inv(vectors.T.astype(float))
    reach = int(np.abs(vectors).sum(axis=0).max())
    span = range(-reach, reach + 1)
    inside = [np.array(ijk) for ijk in itertools.product(span, span, span)
              if np.all((f := to_fractional @ np.array(ijk, dtype=float)) > -1e-9) and np.all(f < 1 - 1e-9)]
    if len(inside) != size:  # cannot happen for integer vectors; guards the search range
        raise RuntimeError(f'found {len(inside)} cells inside a supercell of {size}')
    return inside


def _rotation_sense(cell: np.ndarray, axis: int, sense) -> int:
    """+1 or -1: the sense of rotation about ``axis`` of the octahedron of ``cell``. Neighbours perpendicular to
    the axis always rotate oppositely (corner sharing); along the axis the sense is Glazer's + or -."""
    i, j, k = (int(x) for x in cell)
    others = sum(int(cell[d]) for d in range(3) if d != axis)
    sign = (-1) ** others
    if callable(sense):
        return sign * sense(i, j, k)
    if sense == '-':
        return sign * (-1) ** int(cell[axis])
    if sense == '+':
        return sign
    raise ValueError(f"rotation sense must be '+', '-' or a function, not {sense!r}")


def _period(n: int, up: tuple[int, ...], period: int) -> int:
    """+1 where ``n mod period`` is in ``up``, -1 elsewhere: the up/down sequence of an antipolar pattern."""
    return 1 if n % period in up else -1


#: The pseudocubic supercells (rows: lattice vectors in cubic cells) of the phases below.
PSEUDOCUBIC_2x2x2 = ((2, 0, 0), (0, 2, 0), (0, 0, 2))
_RHOMBOHEDRAL = ((0, 1, 1), (1, 0, 1), (1, 1, 0))
_ORTHORHOMBIC_20 = ((1, 1, 0), (1, -1, 0), (0, 0, 2))
_PBAM_40 = ((1, -1, 0), (2, 2, 0), (0, 0, 2))
_IMA2_30 = ((1, -1, 0), (2, 1, 1), (0, 0, 2))
_PNAM_80 = ((1, -1, 0), (2, 2, 0), (0, 0, 4))

_111 = np.ones(3) / np.sqrt(3)
_1M10 = np.array([1.0, -1.0, 0.0]) / np.sqrt(2)


def r3c(a_site: str, b_site: str, vectors=_RHOMBOHEDRAL, *, lattice: float, tilt: float, a_shift: float,
        b_shift: float) -> Atoms:
    """R3c: a-a-a- antiphase rotations plus A and B displaced along [111] (BiFeO3's ground state, PbZrO3's FE)."""
    return glazer_perovskite(a_site, b_site, vectors, lattice=lattice, tilts=(tilt, tilt, tilt),
                             a_shift=lambda *_: a_shift * _111, b_shift=lambda *_: b_shift * _111)


def pnma(a_site: str, b_site: str, vectors=_ORTHORHOMBIC_20, *, lattice: float, tilt: float,
         in_phase_tilt: float) -> Atoms:
    """Pnma: a-a-c+ rotations (the GdFeO3 pattern; non-polar)."""
    return glazer_perovskite(a_site, b_site, vectors, lattice=lattice, tilts=(tilt, tilt, in_phase_tilt),
                             senses=('-', '-', '+'))


def pbzro3_polymorphs(kind: str = 'ranking', lattice: float = 4.12) -> dict[str, Atoms]:
    """PbZrO3's low-energy phases (minimalist paper, Table I) or the phases its training starts from.

    ``ranking``: FiE, AFE80, AFE40, FE (R3c) and cubic in their own cells (30, 80, 40, 10, 5 atoms).
    ``training``: R3c and Pnma in the 40-atom 2x2x2 cell (the minimalist paper trains from these two, never seeing the AFE ones).

    - AFE40, Pbam (Iniguez et al., PRB 90, 220103 (2014)): a-a-c0 antiphase rotations about [1-10] and Pb
      displaced along [1-10] in an up-up-down-down sequence along [110] (the Sigma mode, q = (1/4, 1/4, 0)).
    - FiE, Ima2, 30 atoms (Aramberri et al., npj Comput. Mater. 7, 196 (2021)): the same rotations with an
      uncompensated up-up-down Pb sequence along [110].
    - AFE80, Pnam (Baker et al., arXiv:2102.08856 (2021); Aramberri et al. 2021): AFE40 with the cell doubled along
      c by an extra rotation about c whose sense runs ++-- along c (spglib: Pnma = Pnam in another setting).
    Amplitudes (0.25 Å Pb shift, 8 deg rotations, 0.3 Å along [111] in R3c) are starting points.
    """
    common = {'lattice': lattice}
    if kind == 'training':
        return {'R3c': r3c('Pb', 'Zr', PSEUDOCUBIC_2x2x2, tilt=8, a_shift=0.3, b_shift=0.1, **common),
                'Pnma': pnma('Pb', 'Zr', PSEUDOCUBIC_2x2x2, tilt=10, in_phase_tilt=8, **common)}
    check_kind(kind)
    tilts = (8.0, -8.0, 0.0)   # a-a-c0 about [1-10]
    sigma = {'a_shift': lambda i, j, k: 0.25 * _period(i + j, (0, 1), 4) * _1M10}
    return {
        'FiE': glazer_perovskite('Pb', 'Zr', _IMA2_30, tilts=tilts,
                                 a_shift=lambda i, j, k: 0.25 * _period(i + j, (0, 1), 3) * _1M10, **common),
        'AFE80': glazer_perovskite('Pb', 'Zr', _PNAM_80, tilts=(8.0, -8.0, 3.0),
                                   senses=('-', '-', lambda i, j, k: _period(k, (0, 1), 4)), **sigma, **common),
        'AFE40': glazer_perovskite('Pb', 'Zr', _PBAM_40, tilts=tilts, **sigma, **common),
        'FE': r3c('Pb', 'Zr', tilt=8, a_shift=0.3, b_shift=0.1, **common),
        'cubic': glazer_perovskite('Pb', 'Zr', np.eye(3, dtype=int), **common),
    }


def bifeo3_polymorphs(kind: str = 'ranking', lattice: float = 3.96) -> dict[str, Atoms]:
    """BiFeO3's R3c ground state and Pnma phase (Dieguez et al., PRB 83, 094105 (2011)); ``training``: both in the
    40-atom 2x2x2 cell (minimalist paper), ``ranking``: R3c (10 atoms), Pnma (20) and cubic (5). Magnetic order is not part
    of the structure: DFT engines take it as an input (G-type for the minimalist paper)."""
    if kind == 'training':
        return {'R3c': r3c('Bi', 'Fe', PSEUDOCUBIC_2x2x2, lattice=lattice, tilt=12, a_shift=0.45, b_shift=0.1),
                'Pnma': pnma('Bi', 'Fe', PSEUDOCUBIC_2x2x2, lattice=lattice, tilt=11, in_phase_tilt=9)}
    check_kind(kind)
    return {'R3c': r3c('Bi', 'Fe', lattice=lattice, tilt=12, a_shift=0.45, b_shift=0.1),
            'Pnma': pnma('Bi', 'Fe', lattice=lattice, tilt=11, in_phase_tilt=9),
            'cubic': glazer_perovskite('Bi', 'Fe', np.eye(3, dtype=int), lattice=lattice)}


def switching_endpoints(a_site: str = 'Bi', b_site: str = 'Fe', *, lattice: float = 3.96, tilt: float = 12,
                        a_shift: float = 0.45, b_shift: float = 0.1) -> tuple[Atoms, Atoms]:
    """Two R3c variants in the same cubic 40-atom cell that differ by the sign of P_z and of the antiphase
    rotation R_z (minimalist paper, Fig. 5, BiFeO3): P along [111] with rotations (t, t, t), and along [11-1] with
    (t, t, -t). Mirror images through z = 0, so the path between them is symmetric."""
    def variant(sign: int) -> Atoms:
        axis = np.array([1.0, 1.0, sign]) / np.sqrt(3)
        return glazer_perovskite(a_site, b_site, PSEUDOCUBIC_2x2x2, lattice=lattice, tilts=(tilt, tilt, sign * tilt),
                                 a_shift=lambda *_: a_shift * axis, b_shift=lambda *_: b_shift * axis)

    return variant(1), variant(-1)


def dipole_texture(a_site: str = 'Ba', b_site: str = 'Ti', *, size: int = 4, layers: int = 1, lattice: float = 4.0,
                   amplitude: float = 0.1, kind: str = 'vortex') -> Atoms:
    """A size x size x layers supercell whose B cations carry an in-plane displacement field (minimalist paper, Fig. 4).

    ``vortex``: u = amplitude (-sin(k y), sin(k x)), k = 2 pi / size, evaluated at each B: a square lattice with
    two vortices (around (0, 0) and (size/2, size/2), opposite circulation) and two antivortices (around
    (0, size/2) and (size/2, 0)) per cell. ``homogeneous``: every B displaced by ``amplitude`` along [110], the
    competing uniform in-plane state.
    """
    if size < 2 or size % 2:
        raise ValueError(f'a vortex-antivortex lattice needs an even size >= 2, got {size}')
    wave = 2 * np.pi / size
    if kind == 'vortex':
        def shift(i, j, k):
            return amplitude * np.array([-np.sin(wave * (j + 0.5)), np.sin(wave * (i + 0.5)), 0.0])
    elif kind == 'homogeneous':
        def shift(i, j, k):
            return amplitude * np.array([1.0, 1.0, 0.0]) / np.sqrt(2)
    else:
        raise ValueError(f"kind must be 'vortex' or 'homogeneous', not {kind!r}")
    return glazer_perovskite(a_site, b_site, ((size, 0, 0), (0, size, 0), (0, 0, layers)), lattice=lattice,
                             b_shift=shift)


def check_kind(kind: str) -> None:
    """The two kinds of polymorph set every material's builder offers (``materials.polymorphs``)."""
    if kind not in ('ranking', 'training'):
        raise ValueError(f"kind must be 'ranking' or 'training', not {kind!r}")
