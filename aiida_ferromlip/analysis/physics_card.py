"""The physics card (no AiiDA): what a potential must reproduce of its labeller, item by item, with tolerances.

Error thresholds on a potential's own MD frames cannot see a missing instability: a potential without the
ferroelectric double well never visits polar states. The card therefore compares the physics the two papers
("Minimalist machine-learned interatomic potentials can predict complex structural behaviors accurately" and the
BaTiO3 SOAP-GAP study of the R-O-T-C sequence) care about, computed the same way with the labeller and with the
potential:

* ``eos`` — the parent phase's equation of state (Birch-Murnaghan): equilibrium lattice, bulk modulus;
* ``polymorphs`` — polymorphs relaxed in their own space group: energies relative to the parent, order, lattice;
* ``wells`` — energy along collective displacement paths at the labeller's equilibrium lattice: depth and
  position of each minimum (the double well);
* ``soft_modes`` — the parent's unstable phonon frequencies at Γ and the zone-boundary points;
* ``test_set`` — errors on an independent test set (random MD frames + rattled relaxed polymorphs);
* ``stability`` — flexible-cell MD at the top temperature and 1.5x it: no atoms closer than a limit, volume kept
  (against the labeller's own MD where the labeller runs it, else its nearest relaxed phase).

Every item is a row ``{group, item, labeller, potential, tolerance, passed, reason}``; a group the labeller could
not compute is a failed row with the reason, and the rest of the card stands.
"""

from __future__ import annotations

import math

import numpy as np
from ase.units import GPa

from aiida_ferromlip.analysis.plots import figure_png

#: Unstable below this frequency (THz, imaginary as negative): the acoustic modes' noise at Γ is not an instability.
UNSTABLE_BELOW_THZ = -0.1

#: The zone-centre and zone-boundary points of a (pseudo)cubic parent, fractional in its reciprocal cell.
CUBIC_POINTS = {'Γ': (0.0, 0.0, 0.0), 'X': (0.0, 0.5, 0.0), 'M': (0.5, 0.5, 0.0), 'R': (0.5, 0.5, 0.5)}


def card_points(names, supercell) -> dict[str, tuple]:
    """The q-points ``names`` (labels of ``CUBIC_POINTS``) whose frequencies the finite displacements of a
    ``supercell`` repetition of the parent give exactly: q·N integer in every direction. A 5-atom cell (1x1x1)
    gives Γ only; phonopy would interpolate X from it without complaint, and the card would compare two guesses."""
    unknown = [name for name in names if name not in CUBIC_POINTS]
    if unknown:
        raise ValueError(f'unknown q-points {unknown}; known: {", ".join(CUBIC_POINTS)}')
    if not names:
        raise ValueError('no q-points: give at least Γ')
    repeats = [int(n) for n in supercell]
    off = [name for name in names
           if any(abs(q * n - round(q * n)) > 1e-8 for q, n in zip(CUBIC_POINTS[name], repeats))]
    if off:
        raise ValueError(f'q-points {off} are not commensurate with the {"x".join(map(str, repeats))} phonon '
                         'supercell: its force constants cannot give their frequencies (use 2x2x2 or drop them)')
    return {name: CUBIC_POINTS[name] for name in names}


# ------------------------------------------------------------------------------------------------- quantities
def equation_of_state(volumes_per_fu, energies_per_fu) -> dict:
    """Birch-Murnaghan fit (ASE's ``EquationOfState``) of energies per formula unit (eV) against volumes per
    formula unit (Å³): equilibrium volume and pseudo-cubic lattice, energy, bulk modulus (GPa). A minimum
    outside the sampled volumes is flagged (``inside: false``): the fit then extrapolates."""
    from ase.eos import EquationOfState

    volumes = np.asarray(volumes_per_fu, dtype=float)
    energies = np.asarray(energies_per_fu, dtype=float)
    if volumes.size < 5:
        raise ValueError(f'an equation of state needs at least 5 volumes, got {volumes.size}')
    eos = EquationOfState(volumes, energies, eos='birchmurnaghan')
    v0, e0, bulk = eos.fit()
    return {'volume_per_fu': float(v0), 'lattice': float(v0 ** (1 / 3)), 'energy_per_fu_eV': float(e0),
            'bulk_modulus_GPa': float(bulk / GPa), 'inside': bool(volumes.min() < v0 < volumes.max()),
            # (E0, B0, B0', V0) in eV and Å³: ase.eos.birchmurnaghan(volume, *these) is the fitted curve
            'birch_murnaghan': [float(value) for value in eos.eos_parameters]}


def well(displacements, energies_per_fu) -> dict:
    """Depth (meV/f.u., <= 0) and position (Å) of the minimum of an energy path that starts at ``d = 0``.

    The minimum is refined by the parabola through the lowest grid point and its neighbours; a minimum at the
    last point is flagged (``at_edge``). No well (the lowest point is ``d = 0``) gives depth 0 at position 0."""
    d = np.asarray(displacements, dtype=float)
    e = 1000 * (np.asarray(energies_per_fu, dtype=float) - energies_per_fu[0])
    order = np.argsort(d)
    d, e = d[order], e[order]
    if d[0] != 0:
        raise ValueError('an energy path must start at zero displacement')
    i = int(np.argmin(e))
    if i == 0:
        return {'depth_meV_per_fu': 0.0, 'position_A': 0.0, 'at_edge': False}
    if i == len(d) - 1:
        return {'depth_meV_per_fu': float(e[i]), 'position_A': float(d[i]), 'at_edge': True}
    a, b, c = np.polyfit(d[i - 1:i + 2], e[i - 1:i + 2], 2)
    position = -b / (2 * a) if a > 0 else d[i]
    position = float(np.clip(position, d[i - 1], d[i + 1]))
    return {'depth_meV_per_fu': float(min(np.polyval([a, b, c], position), e[i])), 'position_A': position,
            'at_edge': False}


def soft_mode_frequencies(parent, supercell, distance: float, forces, points=None) -> dict[str, list[float]]:
    """Phonon frequencies (THz, imaginary negative, sorted) of ``parent`` at ``points`` from finite-displacement
    ``forces`` (phonopy's displacement order, see ``displaced_supercells``)."""
    return _frequencies(_force_constants(parent, supercell, distance, forces), points)


def unstable_modes(parent, supercell, distance: float, forces, points=None, below_thz: float = -0.1) -> list[dict]:
    """The unstable modes of ``parent`` at ``points`` (same forces as ``soft_mode_frequencies``): per mode the point,
    its q (fractional), the frequency (THz, negative) and the displacement pattern of the unit cell's atoms (the
    eigenvector divided by sqrt(mass), complex as ``real``/``imag``, largest component 1)."""
    return _unstable(_force_constants(parent, supercell, distance, forces), parent, points, below_thz)


def soft_modes(parent, supercell, distance: float, forces, points=None, below_thz: float = -0.1) -> dict:
    """``{'frequencies': soft_mode_frequencies(...), 'unstable_modes': unstable_modes(...)}`` from one set of force
    constants."""
    phonon = _force_constants(parent, supercell, distance, forces)
    return {'frequencies': _frequencies(phonon, points), 'unstable_modes': _unstable(phonon, parent, points, below_thz)}


def _frequencies(phonon, points) -> dict[str, list[float]]:
    points = points or CUBIC_POINTS
    phonon.run_qpoints(np.array([points[label] for label in points]))
    return {label: sorted(float(f) for f in frequencies)
            for label, frequencies in zip(points, phonon.qpoints.frequencies)}


def _unstable(phonon, parent, points, below_thz: float) -> list[dict]:
    masses = np.asarray(parent.get_masses())
    modes = []
    for label, q in (points or CUBIC_POINTS).items():
        phonon.run_qpoints([q], with_eigenvectors=True)
        frequencies, vectors = phonon.qpoints.frequencies[0], phonon.qpoints.eigenvectors[0]
        for index in np.where(frequencies < below_thz)[0]:
            pattern = vectors[:, index].reshape(-1, 3) / np.sqrt(masses)[:, None]
            pattern = pattern / np.abs(pattern).max()
            modes.append({'point': label, 'q': [float(x) for x in q], 'frequency_thz': float(frequencies[index]),
                          'real': pattern.real.tolist(), 'imag': pattern.imag.tolist()})
    return modes


def mode_frames(parent, supercell, modes: list[dict], count: int, amplitudes, seed: int = 0) -> list:
    """``count`` supercells of ``parent`` displaced along random combinations of ``modes`` (e.g. the degenerate
    unstable modes at one point): the real part of sum_k c_k u_k exp(2 pi i q.R) with random complex c_k, scaled so
    that the largest atomic displacement is drawn uniformly from ``amplitudes`` (min, max; Å). Frames along the
    labeller's own soft modes teach a potential the curvature that single-atom phonon displacements of 0.01 Å are
    too small to show against the fit's force noise."""
    rng = np.random.default_rng(seed)
    cell = parent.repeat(tuple(int(n) for n in supercell))
    unit = len(parent)
    # lattice translation of every supercell atom (ASE's repeat keeps the unit cell's atom order in each copy)
    translations = np.rint((cell.positions - np.tile(parent.positions, (len(cell) // unit, 1)))
                           @ np.linalg.inv(parent.cell.array)).astype(int)
    frames = []
    for _ in range(count):
        displacement = np.zeros((len(cell), 3), dtype=complex)
        for mode in modes:
            pattern = np.tile(np.array(mode['real']) + 1j * np.array(mode['imag']), (len(cell) // unit, 1))
            phase = np.exp(2j * np.pi * translations @ np.asarray(mode['q']))
            displacement += (rng.normal() + 1j * rng.normal()) * pattern * phase[:, None]
        displacement = displacement.real
        displacement *= rng.uniform(*amplitudes) / np.abs(displacement).max()
        frame = cell.copy()
        frame.positions += displacement
        frames.append(frame)
    return frames


def displaced_supercells(parent, supercell, distance: float):
    """The displaced supercells whose forces ``soft_mode_frequencies`` needs (the parent cell is its own
    primitive cell, so the q-points are fractional in its reciprocal cell)."""
    from ase import Atoms

    phonon = _phonopy(parent, supercell, distance)
    return [Atoms(cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True)
            for cell in phonon.supercells_with_displacements]


def _force_constants(parent, supercell, distance, forces):
    phonon = _phonopy(parent, supercell, distance)
    phonon.forces = np.asarray(forces)
    phonon.produce_force_constants()
    return phonon


def _phonopy(parent, supercell, distance):
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    unit = PhonopyAtoms(symbols=parent.get_chemical_symbols(), cell=parent.cell.array,
                        scaled_positions=parent.get_scaled_positions())
    phonon = Phonopy(unit, supercell_matrix=np.diag([int(n) for n in supercell]), primitive_matrix=None)
    phonon.generate_displacements(distance=distance)
    return phonon


def md_stability(trajectory_cells, trajectory_min_distances, start_volume: float, formula_units: int = 1) -> dict:
    """Per run: shortest interatomic distance over all frames, the final volume (mean of the last fifth of the
    frames) per formula unit and relative to the start."""
    volumes = np.array([abs(np.linalg.det(cell)) for cell in trajectory_cells])
    tail = volumes[-max(1, len(volumes) // 5):]
    return {'min_distance_A': float(np.min(trajectory_min_distances)),
            'volume_change_percent': float(100 * (tail.mean() / start_volume - 1)), 'frames': int(len(volumes)),
            'volume_per_fu': float(tail.mean() / formula_units)}


def labeller_phase_volumes(reference: dict) -> dict:
    """Volume per formula unit (Å³) of every phase the labeller relaxed: the parent's EOS minimum and each
    polymorph. An MD cell that has turned into one of these phases has not run away, whatever its start."""
    volumes = {name: row['volume_per_fu'] for name, row in (reference.get('polymorphs') or {}).get('rows', {}).items()
               if row.get('volume_per_fu')}
    if (reference.get('eos') or {}).get('volume_per_fu'):
        volumes.setdefault((reference.get('polymorphs') or {}).get('parent', 'parent'), reference['eos']['volume_per_fu'])
    return volumes


# ------------------------------------------------------------------------------------------------- comparison
def _row(group, item, labeller, potential, tolerance, passed, reason=None, unit=''):
    return {'group': group, 'item': item, 'labeller': labeller, 'potential': potential, 'tolerance': tolerance,
            'unit': unit, 'passed': bool(passed), 'reason': reason}


def within_tolerance(value, reference, absolute: float, relative: float) -> tuple[bool, float]:
    """``|value - reference| <= max(absolute, relative * |reference|)``, and that tolerance: the card's rule for
    energy differences and well depths (also used by the benchmark tests that judge a quantity the card has not)."""
    tolerance = max(absolute, relative * abs(reference))
    return abs(value - reference) <= tolerance, tolerance


def compare(reference: dict, potential: dict, tolerances: dict) -> list[dict]:
    """The card's rows: each group present in ``reference`` compared with ``potential``.

    ``reference``/``potential`` hold per group what the functions above return (``eos``, ``polymorphs`` rows with
    ``energy_per_fu_eV`` and ``cell_lengths``, ``wells`` per path, ``soft_modes`` per q-point, ``test_set``
    metrics for the potential, ``stability`` per temperature); a group the labeller side marks
    ``{'error': reason}`` becomes one failed row naming the reason."""
    rows = []
    for group, builder in (('eos', _eos_rows), ('polymorphs', _polymorph_rows), ('wells', _well_rows),
                           ('soft_modes', _soft_mode_rows), ('test_set', _test_set_rows),
                           ('stability', _stability_rows)):
        if group not in reference and group not in potential:
            continue
        # the test-set errors and the MD stability are the potential's alone (the labeller made the test labels)
        potential_only = group in ('test_set', 'stability')
        failure = (None if potential_only else _group_error(reference.get(group), 'labeller')) or \
            _group_error(potential.get(group), 'potential')
        if failure:
            rows.append(_row(group, 'computed', None, None, None, False, failure))
            continue
        labeller = ({'md': reference.get('stability'), 'phases': labeller_phase_volumes(reference)}
                    if group == 'stability' else reference.get(group))
        rows += builder(labeller, potential.get(group), tolerances[group])
    return rows


def _group_error(values, side):
    if values is None:
        return f'not computed by the {side}'
    if isinstance(values, dict) and 'error' in values:
        return f'{side}: {values["error"]}'
    return None


def _eos_rows(reference, potential, tolerance):
    rows = []
    ok = abs(potential['lattice'] / reference['lattice'] - 1) * 100 <= tolerance['lattice_percent']
    reason = None if potential['inside'] else "the potential's minimum lies outside the sampled volumes"
    rows.append(_row('eos', 'equilibrium lattice', reference['lattice'], potential['lattice'],
                     f'{tolerance["lattice_percent"]} %', ok and potential['inside'], reason, 'Å'))
    ok, _ = within_tolerance(potential['bulk_modulus_GPa'], reference['bulk_modulus_GPa'], 0.0,
                             tolerance['bulk_modulus_percent'] / 100)
    rows.append(_row('eos', 'bulk modulus', reference['bulk_modulus_GPa'], potential['bulk_modulus_GPa'],
                     f'{tolerance["bulk_modulus_percent"]} %', ok, None, 'GPa'))
    return rows


def _polymorph_rows(reference, potential, tolerance):
    rows, parent = [], reference['parent']
    names = sorted(n for n in reference['rows'] if n != parent)
    for side in (reference, potential):
        if parent not in side['rows']:
            return [_row('polymorphs', 'computed', None, None, None, False, f'the parent {parent} was not relaxed')]
    relative = {side_name: {n: 1000 * (side['rows'][n]['energy_per_fu_eV'] - side['rows'][parent]['energy_per_fu_eV'])
                            for n in names if n in side['rows']}
                for side_name, side in (('labeller', reference), ('potential', potential))}
    for name in names:
        if name not in relative['potential']:
            rows.append(_row('polymorphs', f'{name} energy', relative['labeller'][name], None, None, False,
                             'the potential did not relax it'))
            continue
        ok, tol = within_tolerance(relative['potential'][name], relative['labeller'][name],
                                   tolerance['energy_meV_per_fu'], tolerance['energy_relative'])
        converged = reference['rows'][name]['converged'] and potential['rows'][name]['converged']
        rows.append(_row('polymorphs', f'{name} energy vs {parent}', relative['labeller'][name],
                         relative['potential'][name], round(tol, 2), ok and converged,
                         None if converged else 'a relaxation did not converge', 'meV/f.u.'))
        lengths = np.array(potential['rows'][name]['cell_lengths'])
        reference_lengths = np.array(reference['rows'][name]['cell_lengths'])
        deviation = float(np.max(np.abs(lengths / reference_lengths - 1)) * 100)
        rows.append(_row('polymorphs', f'{name} lattice a, b, c', [round(x, 4) for x in reference_lengths],
                         [round(x, 4) for x in lengths], f'{tolerance["lattice_percent"]} %',
                         deviation <= tolerance['lattice_percent'], f'largest deviation {deviation:.2f} %', 'Å'))
    order = {side: sorted(relative[side], key=relative[side].get) for side in relative}
    rows.append(_row('polymorphs', 'order', order['labeller'], order['potential'], 'same order',
                     order['labeller'] == order['potential']))
    return rows


def _well_rows(reference, potential, tolerance):
    rows = []
    for path in sorted(reference):
        ref, pot = reference[path]['well'], potential[path]['well']
        ok, tol = within_tolerance(pot['depth_meV_per_fu'], ref['depth_meV_per_fu'], tolerance['depth_meV_per_fu'],
                                   tolerance['depth_relative'])
        rows.append(_row('wells', f'{path} depth', ref['depth_meV_per_fu'], pot['depth_meV_per_fu'], round(tol, 2),
                         ok, 'minimum at the end of the path' if pot['at_edge'] else None, 'meV/f.u.'))
        both_flat = ref['depth_meV_per_fu'] > -tolerance['depth_meV_per_fu'] and \
            pot['depth_meV_per_fu'] > -tolerance['depth_meV_per_fu']
        ok = abs(pot['position_A'] - ref['position_A']) <= tolerance['position_A'] or both_flat
        rows.append(_row('wells', f'{path} position', ref['position_A'], pot['position_A'], tolerance['position_A'],
                         ok, 'both wells shallower than the depth tolerance' if both_flat else None, 'Å'))
    return rows


def _soft_mode_rows(reference, potential, tolerance):
    rows, threshold = [], tolerance.get('unstable_below_thz', UNSTABLE_BELOW_THZ)
    for point in reference['frequencies']:
        ref = np.array(reference['frequencies'][point])
        pot = np.array(potential['frequencies'][point])
        count = max(int((ref < threshold).sum()), int((pot < threshold).sum()))
        if count == 0:
            continue
        deviation = float(np.max(np.abs(pot[:count] - ref[:count])))
        rows.append(_row('soft_modes', f'{point} unstable modes', [round(x, 2) for x in ref[:count]],
                         [round(x, 2) for x in pot[:count]], tolerance['frequency_thz'],
                         deviation <= tolerance['frequency_thz'], f'largest deviation {deviation:.2f} THz', 'THz'))
    if not rows:
        rows.append(_row('soft_modes', 'unstable modes', [], [], tolerance['frequency_thz'], True,
                         'neither side has an unstable mode at these points'))
    return rows


def _test_set_rows(reference, potential, tolerance):
    rows = []
    for key, name, unit in (('energy_per_fu_meV_rmse', 'energy RMSE', 'meV/f.u.'),
                            ('forces_meV_per_A_rmse', 'force RMSE', 'meV/Å')):
        limit = tolerance[key]
        rows.append(_row('test_set', f'{name} ({potential["num_frames"]} frames)', None, potential[key], limit,
                         potential[key] <= limit, None, unit))
    return rows


def _stability_rows(labeller, potential, tolerance):
    """One row per MD run: atoms kept apart, no frame blown up, and the final volume (per formula unit) judged
    against, in this order of preference:

    1. the labeller's own MD at that temperature (``labeller['md']``: same start, settings and length; where the
       labeller is cheap enough), within ``labeller_volume_percent``: a potential that over-expands is caught even
       when no phase of the labeller is that far;
    2. the nearest phase the labeller relaxed (``labeller['phases']``), within ``volume_change_percent``: BaTiO3 with
       SevenNet-0 gains 3.0-3.5 % in volume from the cubic start to any polar phase, which is no run-away;
    3. the start, within ``volume_change_percent`` (a card without the labeller's EOS and polymorphs)."""
    labeller = labeller or {}
    labeller_md = labeller.get('md') if isinstance(labeller.get('md'), dict) and 'error' not in labeller['md'] else {}
    phase_volumes = labeller.get('phases') or {}
    rows = []
    for run in sorted(potential):
        values = potential[run]
        problems = []
        if values['min_distance_A'] < tolerance['min_distance_A']:
            problems.append(f'atoms {values["min_distance_A"]:.2f} Å apart')
        shown = {'min_distance_A': round(values['min_distance_A'], 3),
                 'volume_change_percent': round(values['volume_change_percent'], 2)}
        reference_run = labeller_md.get(run, {})
        if reference_run.get('volume_per_fu') and values.get('volume_per_fu'):
            change = 100 * (values['volume_per_fu'] / reference_run['volume_per_fu'] - 1)
            against, bound = f'the labeller\'s MD at {run}', tolerance['labeller_volume_percent']
            shown.update(volume_vs_labeller_percent=round(change, 2))
            judged = f'within {bound} % of the labeller\'s MD volume'
        elif phase_volumes and values.get('volume_per_fu'):
            changes = {name: 100 * (values['volume_per_fu'] / volume - 1) for name, volume in phase_volumes.items()}
            nearest = min(changes, key=lambda name: abs(changes[name]))
            change, against = changes[nearest], f'the labeller\'s {nearest}'
            bound = tolerance['volume_change_percent']
            shown.update(nearest_phase=nearest, volume_from_phase_percent=round(change, 2))
            judged = f'within {bound} % of the nearest labeller phase'
        else:
            change, against, bound = values['volume_change_percent'], 'the start', tolerance['volume_change_percent']
            judged = f'within {bound} % of the start'
        if abs(change) > bound:
            problems.append(f'volume {change:+.1f} % from {against}')
        if values.get('sane_frames', values['frames']) < values['frames']:
            problems.append(f'{values["frames"] - values["sane_frames"]} of {values["frames"]} frames blown up '
                            f'(forces, temperature or energy beyond the sampler\'s sanity rules)')
        shown_labeller = ({'volume_change_percent': round(reference_run['volume_change_percent'], 2)}
                          if 'volume_vs_labeller_percent' in shown else None)
        rows.append(_row('stability', f'MD at {run}', shown_labeller, shown,
                         f'>= {tolerance["min_distance_A"]} Å, {judged}',
                         not problems, '; '.join(problems) or None))
    return rows


# ------------------------------------------------------------------------------------------------- reporting
def _fmt(value) -> str:
    if value is None:
        return '-'
    if isinstance(value, float):
        return f'{value:.4g}' if math.isfinite(value) else 'nan'
    if isinstance(value, (list, tuple)):
        return ', '.join(_fmt(v) for v in value)
    if isinstance(value, dict):
        return ', '.join(f'{k} {_fmt(v)}' for k, v in value.items())
    return str(value)


def markdown(rows: list[dict], title: str = 'Physics card') -> str:
    """The card as a Markdown table (one line per item, failed items marked)."""
    passed = sum(row['passed'] for row in rows)
    lines = [f'### {title}: {passed}/{len(rows)} items pass', '',
             '| group | item | labeller | potential | tolerance | | note |', '|---|---|---|---|---|---|---|']
    for row in rows:
        unit = f' {row["unit"]}' if row['unit'] else ''
        lines.append(f'| {row["group"]} | {row["item"]} | {_fmt(row["labeller"])}{unit} | '
                     f'{_fmt(row["potential"])}{unit} | {_fmt(row["tolerance"])} | '
                     f'{"pass" if row["passed"] else "**FAIL**"} | {row["reason"] or ""} |')
    return '\n'.join(lines)


def plot_png(reference: dict, potential: dict, rows: list[dict], title: str) -> bytes:
    """Four panels: the EOS, the energy paths (double wells), the polymorph energies, the soft modes; the
    labeller in black, the potential in red."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    axis = axes[0, 0]
    for side, style, name in ((reference, 'ko-', 'labeller'), (potential, 'r^--', 'potential')):
        eos = side.get('eos', {})
        if 'points' in eos:
            lattices = np.cbrt(eos['points']['volumes_per_fu'])
            energies = 1000 * (np.array(eos['points']['energies_per_fu']) - min(eos['points']['energies_per_fu']))
            axis.plot(lattices, energies, style, ms=4, label=f'{name}: a0 {eos["lattice"]:.4f} Å')
    axis.set_xlabel('pseudo-cubic lattice (Å)')
    axis.set_ylabel('E - E_min (meV/f.u.)')
    axis.set_title('parent equation of state')
    axis.legend(fontsize=7)

    axis = axes[0, 1]
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for index, path in enumerate(sorted(reference.get('wells', {}) if 'error' not in reference.get('wells', {}) else {})):
        for side, style in ((reference, '-'), (potential, '--')):
            values = side.get('wells', {}).get(path)
            if values:
                energies = 1000 * (np.array(values['energies_per_fu']) - values['energies_per_fu'][0])
                axis.plot(values['displacements'], energies, style, color=colours[index % len(colours)],
                          label=f'{path} ({"labeller" if side is reference else "potential"})')
    axis.axhline(0, color='0.6', lw=0.5)
    axis.set_xlabel('collective displacement d (Å)')
    axis.set_ylabel('E(d) - E(0) (meV/f.u.)')
    axis.set_title('double wells at the labeller\'s lattice')
    axis.legend(fontsize=6, ncol=2)

    axis = axes[1, 0]
    polymorph_rows = [r for r in rows if r['group'] == 'polymorphs' and r['item'].endswith(f'vs {reference.get("polymorphs", {}).get("parent")}')]
    x = np.arange(len(polymorph_rows))
    axis.bar(x - 0.2, [r['labeller'] for r in polymorph_rows], 0.4, color='0.3', label='labeller')
    axis.bar(x + 0.2, [r['potential'] if r['potential'] is not None else np.nan for r in polymorph_rows], 0.4,
             color='tab:red', label='potential')
    axis.set_xticks(x)
    axis.set_xticklabels([r['item'].split()[0] for r in polymorph_rows], fontsize=8)
    axis.set_ylabel('relaxed energy vs parent (meV/f.u.)')
    axis.set_title('polymorphs (own symmetry)')
    axis.legend(fontsize=7)

    axis = axes[1, 1]
    soft = reference.get('soft_modes', {})
    if 'frequencies' in soft and 'frequencies' in potential.get('soft_modes', {}):
        for index, point in enumerate(soft['frequencies']):
            axis.plot([index] * len(soft['frequencies'][point]), soft['frequencies'][point], 'k_', ms=18)
            axis.plot([index + 0.15] * len(potential['soft_modes']['frequencies'][point]),
                      potential['soft_modes']['frequencies'][point], 'r_', ms=18)
        axis.set_xticks(range(len(soft['frequencies'])))
        axis.set_xticklabels(list(soft['frequencies']))
    axis.axhline(0, color='0.6', lw=0.5)
    axis.set_ylabel('frequency (THz; imaginary < 0)')
    axis.set_title('parent phonons: labeller (black), potential (red)')
    passed = sum(r['passed'] for r in rows)
    figure.suptitle(f'{title}: {passed}/{len(rows)} items pass')
    return figure_png(figure, dpi=100)
