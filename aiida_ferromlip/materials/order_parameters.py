"""Order parameters of ABO3 perovskites: local dipoles, polarization and octahedral rotations (tilts).

The papers characterise structures by the polarization P and by the in-phase (M-point) and antiphase (R-point)
rotations of the O6 octahedra (minimalist paper, Fig. 1 and Fig. 5; BaTiO3-GAP paper, Figs. 5-6). Both are read from the positions
alone, per B-centred cell:

* **local dipole** of the cell around each B cation: Born effective charges times the displacements from the
  cell's own centrosymmetric reference, p = Z_B (r_B - c) + sum over the 6 O of 1/2 Z_O (r_O - f), where c is the
  centre of the 8 A cations of the cage and f the centre of the 4 A cations of the face the O sits on (an O on the
  B-O-B axis d moves with Z_O|| along d and Z_O_perp across it). The A cations define the reference, so they
  carry no dipole here: this is the Ti-centred local mode of effective Hamiltonians, stated as such. Why not a
  library: ASE and pymatgen have no per-cell Born-charge dipole for perovskites, and the Berry-phase polarization
  needs DFT.
* **polarization** = sum of local dipoles / volume, in C/m^2.
* **rotation of an octahedron** about axis a: the mean angle by which its four O perpendicular to a have turned
  about a (atan of the sideways over the axial B-O component); the R and M amplitudes are the averages of these
  angles weighted by the staggered signs of each pattern, in degrees.

B cations are indexed by their pseudocubic cell (positions divided by the pseudocubic lattice parameter, rounded),
which is what assigns the staggered signs; this assumes the cell's axes are the pseudocubic ones (true for the
builders of this package and for the 2x2x2 cells of the papers).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

#: Born effective charges (|e|) of cubic BaTiO3, LDA (Ghosez, Michenaud and Gonze, PRB 58, 6224 (1998)):
#: A, B, and O along (||) and across (perp) its B-O-B bond.
BORN_CHARGES = {'BaTiO3': {'A': 2.77, 'B': 7.25, 'O_par': -5.71, 'O_perp': -2.15}}

#: Formal oxidation states, for nominal charges where no Born charges are tabulated (stated as nominal).
OXIDATION_STATES = {'Ba': 2, 'Sr': 2, 'Pb': 2, 'Ca': 2, 'Bi': 3, 'La': 3, 'Ti': 4, 'Zr': 4, 'Hf': 4, 'Fe': 3,
                    'Mn': 3, 'Al': 3}


def nominal_charges(atoms: Atoms) -> dict:
    """The formal charges of an ABO3 perovskite in the form ``local_dipoles`` takes (O: -2 in every direction)."""
    a_sites, b_sites, _ = perovskite_sites(atoms)
    symbols = atoms.get_chemical_symbols()
    a, b = symbols[a_sites[0]], symbols[b_sites[0]]
    missing = [s for s in (a, b) if s not in OXIDATION_STATES]
    if missing:
        raise ValueError(f'no formal oxidation state known for {", ".join(missing)}; give the charges explicitly')
    return {'A': OXIDATION_STATES[a], 'B': OXIDATION_STATES[b], 'O_par': -2.0, 'O_perp': -2.0}


def default_charges(atoms: Atoms) -> tuple[dict, str]:
    """The charges the benchmarks use, and which they are: BaTiO3's Born charges for a Ba/Ti perovskite, formal
    charges otherwise."""
    if {'Ba', 'Ti'} <= set(atoms.get_chemical_symbols()):
        return BORN_CHARGES['BaTiO3'], 'Born effective charges of BaTiO3 (Ghosez et al. 1998)'
    return nominal_charges(atoms), 'formal (nominal) charges'


#: e/Å^2 -> C/m^2
E_PER_A2_TO_C_PER_M2 = 16.0217663


def perovskite_sites(atoms: Atoms) -> tuple[list[int], list[int], list[int]]:
    """Indices of the A cations, B cations and O anions of an ABO3 perovskite (B: the cation with 6 O nearest)."""
    symbols = np.array(atoms.get_chemical_symbols())
    cations = sorted(set(symbols) - {'O'})
    if len(cations) != 2 or (symbols == 'O').sum() != 3 * (symbols == cations[0]).sum():
        raise ValueError(f'{atoms.get_chemical_formula()} is not an ABO3 perovskite')
    oxygens = np.flatnonzero(symbols == 'O')
    # B-O bonds (~2 Å) are shorter than A-O ones (~2.8 Å): the cation nearest to any O is the B cation
    nearest = {cation: atoms.get_distances(int(np.flatnonzero(symbols == cation)[0]), oxygens, mic=True).min()
               for cation in cations}
    b_site = min(cations, key=nearest.get)
    a_site = next(c for c in cations if c != b_site)
    return list(np.flatnonzero(symbols == a_site)), list(np.flatnonzero(symbols == b_site)), list(oxygens)


def _neighbours(atoms: Atoms, centres: list[int], candidates: list[int], count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each of ``centres``: the indices of and vectors to its ``count`` nearest ``candidates``, periodic images
    included (a 5-atom cell's B has 8 A neighbours that are images of one atom, which minimum-image distances miss)."""
    from ase.neighborlist import neighbor_list

    lattice = (atoms.get_volume() / len(centres)) ** (1 / 3)
    first, second, vectors = neighbor_list('ijD', atoms, 1.15 * lattice)  # A at 0.87 a, O at 0.5 a; next at 1.12 a
    wanted = np.isin(second, candidates)
    result = []
    for centre in centres:
        mine = (first == centre) & wanted
        if mine.sum() < count:
            raise ValueError(f'atom {centre} has {mine.sum()} neighbours of the expected kind, not {count}: '
                             f'not a perovskite network')
        order = np.argsort(np.linalg.norm(vectors[mine], axis=1))[:count]
        result.append((second[mine][order], vectors[mine][order]))
    return result


def _neighbour_vectors(atoms: Atoms, centres: list[int], candidates: list[int], count: int) -> list[np.ndarray]:
    return [vectors for _, vectors in _neighbours(atoms, centres, candidates, count)]


def local_dipoles(atoms: Atoms, charges: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per B-centred cell: the B positions and the local dipoles (e·Å), from ``charges`` (default BaTiO3's)."""
    charges = charges or BORN_CHARGES['BaTiO3']
    a_sites, b_sites, oxygens = perovskite_sites(atoms)
    dipoles = []
    for cage, bonds in zip(_neighbour_vectors(atoms, b_sites, a_sites, 8), _neighbour_vectors(atoms, b_sites, oxygens, 6)):
        centre = cage.mean(axis=0)  # relative to the B atom
        dipole = charges['B'] * (0.0 - centre)
        for bond in bonds:
            axis = int(np.argmax(np.abs(bond)))
            # the 4 A of the face this O lies on: the cage atoms on the same side along the bond axis
            face = cage[np.sign(cage[:, axis]) == np.sign(bond[axis])]
            displacement = bond - face.mean(axis=0)
            z = np.full(3, charges['O_perp'])
            z[axis] = charges['O_par']
            dipole = dipole + 0.5 * z * displacement
        dipoles.append(dipole)
    return atoms.positions[b_sites], np.array(dipoles)


def cell_dipoles_from_partials(atoms: Atoms, partial_dipoles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """B-centred unit-cell dipoles from atom-resolved partial dipoles (BaTiO3-GAP paper): each B's own, plus 1/2 of each of
    its 6 O and 1/8 of each of its 8 A, so every atom is shared out exactly once and the cell dipoles sum to the total
    dipole. Returns the B positions and the cell dipoles (units of ``partial_dipoles``)."""
    partial_dipoles = np.asarray(partial_dipoles, dtype=float)
    if partial_dipoles.shape != (len(atoms), 3):
        raise ValueError(f'expected one partial dipole per atom, shape ({len(atoms)}, 3), got {partial_dipoles.shape}')
    a_sites, b_sites, oxygens = perovskite_sites(atoms)
    cells = partial_dipoles[b_sites].copy()
    for shares, weight in ((_neighbours(atoms, b_sites, oxygens, 6), 1 / 2),
                           (_neighbours(atoms, b_sites, a_sites, 8), 1 / 8)):
        for cell, (indices, _) in zip(cells, shares):
            cell += weight * partial_dipoles[indices].sum(axis=0)
    return atoms.positions[b_sites], cells


def polarization(atoms: Atoms, charges: dict | None = None) -> np.ndarray:
    """The polarization (C/m^2) of the cell: the sum of the local dipoles over the volume."""
    _, dipoles = local_dipoles(atoms, charges)
    return dipoles.sum(axis=0) / atoms.get_volume() * E_PER_A2_TO_C_PER_M2


def pseudocubic_indices(atoms: Atoms, positions: np.ndarray) -> np.ndarray:
    """Integer pseudocubic cell index of each of the cell's B ``positions`` (B sits at the cell centre)."""
    return np.floor(positions / _pseudocubic_lattice(atoms, positions) + 1e-6).astype(int)


def _pseudocubic_lattice(atoms: Atoms, b_positions: np.ndarray) -> float:
    """The pseudocubic lattice parameter: the cube root of the volume per B cation."""
    return (atoms.get_volume() / len(b_positions)) ** (1 / 3)


def octahedral_rotations(atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
    """Per octahedron: B positions and the rotation angles (degrees) about x, y and z."""
    _, b_sites, oxygens = perovskite_sites(atoms)
    angles = []
    for bonds in _neighbour_vectors(atoms, b_sites, oxygens, 6):
        rotation = np.zeros(3)
        for axis in range(3):
            turns = []
            for bond in bonds:
                along = int(np.argmax(np.abs(bond)))
                if along == axis:
                    continue
                # right-handed rotation about `axis` turns a bond along `along` towards `across`
                across = 3 - axis - along
                sense = np.cross(np.eye(3)[axis], np.eye(3)[along])[across]
                turns.append(np.degrees(np.arctan2(sense * bond[across], abs(bond[along]))) * np.sign(bond[along]))
            rotation[axis] = np.mean(turns)
        angles.append(rotation)
    return atoms.positions[b_sites], np.array(angles)


def tilt_amplitudes(atoms: Atoms) -> dict[str, list[float | None]]:
    """The antiphase (R) and in-phase (M) rotation amplitudes about x, y, z in degrees, the papers' R and M.

    The sign of each is that of the octahedron in the cell with the smallest indices, so a structure and its
    tilt-reversed twin give opposite R (what the BiFeO3 switching path follows). A pattern the cell cannot hold
    (the in-phase x rotation in the 20-atom Pnma cell, whose vector (1, 1, 0) flips its sign) has no amplitude in
    that cell: None, rather than a projection on weights that do not repeat."""
    positions, angles = octahedral_rotations(atoms)
    cells = pseudocubic_indices(atoms, positions)
    vectors = np.rint(atoms.cell.array / _pseudocubic_lattice(atoms, positions)).astype(int)
    origin = np.lexsort(cells.T[::-1])[0]
    antiphase, in_phase = [], []
    for axis in range(3):
        perpendicular = [d for d in range(3) if d != axis]
        in_plane = (-1.0) ** cells[:, perpendicular].sum(axis=1)
        along = (-1.0) ** cells[:, axis]
        patterns = ((in_plane * along, vectors.sum(axis=1), antiphase),
                    (in_plane, vectors[:, perpendicular].sum(axis=1), in_phase))
        for weights, parities, result in patterns:
            commensurate = bool(np.all(parities % 2 == 0))
            weights = weights * weights[origin]
            result.append(float(np.mean(weights * angles[:, axis])) if commensurate else None)
    return {'R': antiphase, 'M': in_phase}


def dipole_map(atoms: Atoms, charges: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Local dipoles averaged over the layers along z: the in-plane grid indices (n, 2) and dipoles (n, 3)."""
    positions, dipoles = local_dipoles(atoms, charges)
    cells = pseudocubic_indices(atoms, positions)
    columns = {}
    for (i, j, _), dipole in zip(cells, dipoles):
        columns.setdefault((int(i), int(j)), []).append(dipole)
    keys = sorted(columns)
    return np.array(keys), np.array([np.mean(columns[key], axis=0) for key in keys])


def winding_numbers(grid: np.ndarray, dipoles: np.ndarray) -> np.ndarray:
    """Winding number of the in-plane dipole direction around every plaquette of a periodic square grid: +1 for a
    vortex, -1 for an antivortex, 0 elsewhere (sum of the wrapped angle steps around the plaquette over 2 pi)."""
    size_i, size_j = grid[:, 0].max() - grid[:, 0].min() + 1, grid[:, 1].max() - grid[:, 1].min() + 1
    angle = np.full((size_i, size_j), np.nan)
    for (i, j), dipole in zip(grid - grid.min(axis=0), dipoles):
        angle[i, j] = np.arctan2(dipole[1], dipole[0])
    if np.isnan(angle).any():
        raise ValueError('the dipoles do not fill a square grid')
    corners = [angle, np.roll(angle, -1, axis=0), np.roll(np.roll(angle, -1, axis=0), -1, axis=1),
               np.roll(angle, -1, axis=1)]
    total = np.zeros_like(angle)
    for first, second in zip(corners, corners[1:] + corners[:1]):
        total += (second - first + np.pi) % (2 * np.pi) - np.pi
    return np.rint(total / (2 * np.pi)).astype(int)
