"""HfO2 polymorphs (minimalist paper, Table II): the cubic fluorite, the tetragonal and monoclinic phases, and the two
orthorhombic ones that matter for ferroelectric hafnia.

Cubic and tetragonal are built from the fluorite cell (the tetragonal phase is the fluorite with the O columns
shifted up and down along c in a checkerboard, the X2- mode, plus c/a > 1). The low-symmetry phases are placed
from their space group and Wyckoff positions with ``ase.spacegroup.crystal``:

- monoclinic P2_1/c: the baddeleyite structure of HfO2 (Hann, Suitch and Pentecost, J. Am. Ceram. Soc. 68,
  C285 (1985));
- oIII, polar Pca2_1: the phase behind ferroelectric hafnia (Boescke et al., APL 99, 102903 (2011), the minimalist paper
  ref. 43): Hf near the fcc sites of the fluorite, one O sublattice displaced along a and c;
- oI, antipolar Pbca: the ortho-I structure of ZrO2 (Ohtaka et al., J. Am. Ceram. Soc. 73, 1990) in a HfO2 cell.

The coordinates are approximate starting points (the oIII ones to two decimals), not refined data: what vouches
for them is tested, namely each space group (spglib) and that the reference model, relaxing each phase in its
space group, ranks them monoclinic < oI < oIII < tetragonal < cubic as PBEsol does in the minimalist paper (docs/benchmarks.md).
"""

from __future__ import annotations

from ase import Atoms
from ase.build import bulk, make_supercell
from ase.spacegroup import crystal

from .perovskites import check_kind


def fluorite(metal: str = 'Hf', lattice: float = 5.07) -> Atoms:
    """The cubic fluorite (Fm-3m) MO2 in its conventional 12-atom cell."""
    return bulk(f'{metal}O2', 'fluorite', a=lattice, cubic=True)


def tetragonal_fluorite(metal: str = 'Hf', lattice: float = 5.07, c_over_a: float = 1.03, shift: float = 0.05) -> Atoms:
    """P4_2/nmc: fluorite with O columns shifted by +-``shift`` (fractional, along c) in a checkerboard, c/a > 1."""
    atoms = fluorite(metal, lattice)
    cell = atoms.cell.array.copy()
    cell[2] *= c_over_a
    atoms.set_cell(cell, scale_atoms=True)
    fractional = atoms.get_scaled_positions()
    for index, symbol in enumerate(atoms.get_chemical_symbols()):
        if symbol == 'O':  # O sit at odd multiples of 1/4: (x + y) * 4 = 2 or 4 (mod 4) tells the two columns apart
            x, y = fractional[index, :2]
            fractional[index, 2] += shift if (round(4 * x) + round(4 * y)) % 4 == 2 else -shift
    atoms.set_scaled_positions(fractional)
    return atoms


#: The minimalist-MLIP paper trains HfO2 in "a 24-atom [cell] obtained from the primitive cell of the tetragonal
#: polymorph by applying a transformation that doubles the volume while keeping the cell as isotropic as possible":
#: these matrices double the 12-atom conventional cells; they are what ``ase.build.find_optimal_cell_shape(cell, 2,
#: 'sc')`` finds for each (tested), kept here so the cells do not change with ASE's search. Cell lengths
#: 7.3/7.3/6.8 Å (P2_1/c) and 7.2/7.2/7.3 Å (P4_2/nmc), instead of the 10.1 x 5.1 x 5.2 Å of a plain doubling.
TRAINING_SUPERCELLS = {'P2_1/c': [[1, -1, 0], [1, 1, 0], [1, 0, 1]], 'P4_2/nmc': [[1, -1, 0], [1, 1, 0], [-1, 0, 1]]}


def hfo2_polymorphs(kind: str = 'ranking') -> dict[str, Atoms]:
    """HfO2's phases. ``ranking``: monoclinic, tetragonal, oIII, oI, cubic in their conventional cells (12, 12,
    12, 24, 12 atoms). ``training``: the minimalist-MLIP paper's two starting phases, P2_1/c and P4_2/nmc, in
    24-atom cells as isotropic as possible (``TRAINING_SUPERCELLS``)."""
    monoclinic = crystal(['Hf', 'O', 'O'], basis=[(0.2759, 0.0412, 0.2078), (0.0703, 0.3359, 0.3406),
                                                  (0.4423, 0.7549, 0.4789)],
                         spacegroup=14, cellpar=[5.117, 5.175, 5.291, 90, 99.22, 90])
    if kind == 'training':
        return {'P2_1/c': make_supercell(monoclinic, TRAINING_SUPERCELLS['P2_1/c']),
                'P4_2/nmc': make_supercell(tetragonal_fluorite(), TRAINING_SUPERCELLS['P4_2/nmc'])}
    check_kind(kind)
    return {
        'monoclinic': monoclinic,
        'tetragonal': tetragonal_fluorite(),
        'oIII': crystal(['Hf', 'O', 'O'], basis=[(0.03, 0.27, 0.25), (0.37, 0.04, 0.11), (0.27, 0.46, 0.50)],
                        spacegroup=29, cellpar=[5.23, 5.02, 5.05, 90, 90, 90]),
        'oI': crystal(['Hf', 'O', 'O'], basis=[(0.8843, 0.0332, 0.2558), (0.7911, 0.3713, 0.1310),
                                               (0.9772, 0.7388, 0.4984)],
                      spacegroup=61, cellpar=[10.086, 5.262, 5.091, 90, 90, 90]),
        'cubic': fluorite(),
    }
