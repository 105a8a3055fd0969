"""Berry-phase polarization from pw.x (``lberry``): reading the phases, the band gap that makes them meaningful,
and the branch choice that turns three phases modulo a quantum into one continuous cell dipole (BaTiO3-GAP paper, SI 3).

pw.x prints, for strings along reciprocal vector ``gdir``, the TOTAL PHASE φ (ionic + electronic) as a fraction of
the lattice vector a_gdir: the cell dipole is M = Σ_d φ_d a_d (e·Å), each φ_d defined modulo a quantum. pw.x prints
``MOD_TOT: 2`` for spin-unpolarised cells with even ionic charges, but since QE 6.5 ``c_phase`` folds the
electronic phase into [-½, ½) (modulo 1) before adding the ions; we therefore treat every phase as defined modulo
1, the smaller quantum: a branch chosen at quantum 1 with a good reference is also right at quantum 2.

Branch choice: the phases of the frame minus those of a centrosymmetric reference (whose phases must be 0 or ½)
are compared with the Born-effective-charge dipole of the frame (``materials.order_parameters.local_dipoles``,
a linear model around the same non-polar reference); the integer per direction that brings them closest is the
branch, and what remains (``residual``) is the Berry phase's correction to the linear model. A residual of more
than ``tolerance`` quanta means the linear model cannot tell the branch: the frame is flagged, not trained on.

These few lines are hand-written because no library reads pw.x's Berry-phase block (aiida-quantumespresso's parser
and ASE's ``espresso`` reader skip it).
"""

from __future__ import annotations

import re

import numpy as np

#: the phases are folded modulo this many lattice vectors (see the module docstring)
PHASE_QUANTUM = 1.0


class BerryPhaseOutputError(ValueError):
    """The pw.x output holds no (or an incomplete) Berry-phase summary."""


_FLOAT = r'([-+]?\d*\.\d+(?:[eEdD][-+]?\d+)?)'
_PATTERNS = {
    'gdir': r'along the direction of vector\s+(\d)',
    'nppstr': r'Number of k-points per string:\s*(\d+)',
    'strings': r'Number of different strings\s*:\s*(\d+)',
    'ionic_phase': rf'Ionic Phase:\s*{_FLOAT}',
    'electronic_phase': rf'Electronic Phase:\s*{_FLOAT}',
    'total_phase': rf'TOTAL PHASE:\s*{_FLOAT}',
    'mod_tot': r'MOD_TOT:\s*(\d+)',
    'dipole_e_bohr': rf'P =\s*{_FLOAT}\s+\(mod\s+{_FLOAT}\)\s+\(e/Omega\)\.bohr',
    'direction': rf'polarization direction is:\s*\(\s*{_FLOAT}\s*,\s*{_FLOAT}\s*,\s*{_FLOAT}\s*\)',
}


def parse_berry_phase(text: str) -> dict:
    """The Berry-phase summary of one pw.x run: ``gdir``, ``nppstr``, ``strings``, the ionic, electronic and total
    phases (fractions of a_gdir), ``mod_tot``, the dipole projection in e·bohr with its quantum, the unit vector
    of a_gdir, and ``phase``: the total phase to the precision of the dipole line. Raises :class:`BerryPhaseOutputError` naming what is missing."""
    if 'SUMMARY OF PHASES' not in text or 'K-POINTS STRINGS USED' not in text:
        raise BerryPhaseOutputError('the pw.x output has no Berry-phase summary (`SUMMARY OF PHASES`): was it an '
                                    '`nscf` run with `lberry = .true.`, and did it finish?')
    block = text[text.rindex('K-POINTS STRINGS USED'):]
    values, missing = {}, []
    for key, pattern in _PATTERNS.items():
        match = re.search(pattern, block)
        if match is None:
            missing.append(key)
            continue
        numbers = [float(group.replace('D', 'E').replace('d', 'e')) for group in match.groups()]
        values[key] = numbers[0] if len(numbers) == 1 else numbers
    if missing:
        raise BerryPhaseOutputError(f'the Berry-phase summary lacks {", ".join(missing)}')
    dipole, quantum = values.pop('dipole_e_bohr')
    values.update({key: int(values[key]) for key in ('gdir', 'nppstr', 'strings', 'mod_tot')})
    values.update({'dipole_e_bohr': dipole, 'quantum_e_bohr': quantum})
    # the phase again from the dipole line (7 decimals against the summary's 5): quantum = mod_tot x |a_gdir|
    values['phase'] = dipole * values['mod_tot'] / quantum
    return values


def band_gap(eigenvalues: np.ndarray, n_electrons: float) -> float:
    """Gap (eV) between the highest occupied and the lowest unoccupied band over all k-points of a spin-unpolarised
    calculation with ``n_electrons``; zero or negative for a metal (the bands overlap). ``eigenvalues``: [k, band]."""
    eigenvalues = np.asarray(eigenvalues, dtype=float)
    occupied = n_electrons / 2
    if abs(occupied - round(occupied)) > 1e-6:
        raise ValueError(f'{n_electrons} electrons: an odd count cannot fill spin-degenerate bands, the cell is a '
                         f'metal (or needs a spin-polarised calculation)')
    occupied = int(round(occupied))
    if eigenvalues.ndim != 2 or eigenvalues.shape[1] <= occupied:
        raise ValueError(f'{eigenvalues.shape} eigenvalues hold no empty band above the {occupied} occupied ones: '
                         f'the gap cannot be measured (increase `nbnd`)')
    return float(eigenvalues[:, occupied].min() - eigenvalues[:, occupied - 1].max())


def reference_phases(phases: np.ndarray, tolerance: float = 0.02) -> np.ndarray:
    """The phases of the non-polar reference folded to 0 or ½ (what inversion symmetry allows); an error if one is
    farther than ``tolerance`` from both, i.e. the reference is not centrosymmetric."""
    phases = np.asarray(phases, dtype=float)
    folded = np.round(2 * phases) / 2
    off = np.abs(phases - folded)
    if np.any(off > tolerance):
        raise ValueError(f'the reference phases {np.round(phases, 4).tolist()} are not 0 or 1/2 modulo 1 (off by '
                         f'{np.round(off, 4).tolist()}): the reference structure is not centrosymmetric, so it cannot '
                         f'define the non-polar branch')
    return np.mod(folded, PHASE_QUANTUM)


def unwrap_dipole(cell: np.ndarray, phases: np.ndarray, reference: np.ndarray, born_dipole: np.ndarray,
                  tolerance: float = 0.25) -> dict:
    """The cell dipole (e·Å, relative to the non-polar reference) on the branch of the Born-charge model.

    ``cell``: lattice vectors as rows (Å); ``phases``: the frame's total phases along a_1..a_3; ``reference``: the
    reference's (from :func:`reference_phases`); ``born_dipole``: the linear model's dipole (e·Å). Returns
    ``dipole``, ``branch`` (integer quanta removed per direction), ``residual`` (Berry minus Born, in quanta) and
    ``ok`` (False when a residual exceeds ``tolerance`` quanta: the branch is ambiguous)."""
    cell = np.asarray(cell, dtype=float)
    born_phases = np.asarray(born_dipole, dtype=float) @ np.linalg.inv(cell)  # M = φ · cell  →  φ = M · cell⁻¹
    difference = np.asarray(phases, dtype=float) - np.asarray(reference, dtype=float) - born_phases
    branch = np.round(difference / PHASE_QUANTUM) * PHASE_QUANTUM
    residual = difference - branch
    dipole = (born_phases + residual) @ cell
    return {'dipole': dipole, 'branch': branch, 'residual': residual,
            'ok': bool(np.all(np.abs(residual) <= tolerance * PHASE_QUANTUM))}
