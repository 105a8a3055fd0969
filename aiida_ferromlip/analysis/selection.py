"""Selection of MD frames for labelling: physical sanity, decorrelation, and structure-level FPS on SOAP.

The BaTiO3-GAP paper keeps only frames spaced by the energy autocorrelation time, then the most diverse by farthest-point
sampling on SOAP features; candidates must also be far from what the training set already holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms

from aiida_ferromlip.analysis.soap import atomic_soap, farthest_point_sampling
from aiida_ferromlip.validation import min_interatomic_distance


def contiguous_segments(indices: Sequence[int]) -> list[np.ndarray]:
    """Runs of consecutive frame indices (a rejected frame ends a run): an autocorrelation is only defined along
    a run, never across the gap a rejected frame leaves."""
    indices = np.asarray(sorted(indices), dtype=int)
    if indices.size == 0:
        return []
    breaks = np.where(np.diff(indices) != 1)[0] + 1
    return np.split(indices, breaks)


def autocorrelation_time(series: Sequence[float], segments: Sequence[Sequence[int]] | None = None,
                         window_c: float = 5.0) -> float:
    """Integrated autocorrelation time (in frames) of ``series`` with Sokal's automatic window (c = ``window_c``).

    ``segments`` (positions in ``series`` of contiguous runs, e.g. from ``contiguous_segments``) pools the
    autocorrelation over the runs, each about its own mean, without pairing frames across a gap; default: one run. The estimate is biased low
    when the series is not many times longer than the time itself (``decorrelation`` says when to trust it).
    Written here rather than imported: a few lines of numpy, and the libraries that ship it (emcee, pymbar) would
    add a dependency for one function.
    """
    x = np.asarray(series, dtype=float)
    runs = [np.asarray(run, dtype=int) for run in (segments if segments is not None else [np.arange(x.size)])]
    runs = [run for run in runs if run.size]
    n = sum(run.size for run in runs)
    if n < 4 or np.allclose(x, x[0]):
        return 1.0
    longest = max(run.size for run in runs)
    acf = np.zeros(longest)
    for run in runs:  # each run about its own mean, as emcee pools its walkers
        y = x[run] - x[run].mean()
        spectrum = np.fft.rfft(y, n=2 * y.size)
        acf[:y.size] += np.fft.irfft(spectrum * np.conjugate(spectrum))[:y.size]
    if acf[0] <= 0:
        return 1.0
    acf /= acf[0]
    tau = 1.0
    for window in range(1, longest):
        tau = 1.0 + 2.0 * acf[1:window + 1].sum()
        if window >= window_c * tau:
            break
    return float(max(tau, 1.0))


def decorrelation(series: Sequence[float], indices: Sequence[int] | None = None, min_spans: float = 50.0,
                  window_c: float = 5.0) -> dict:
    """Which frames of one trajectory to keep as independent, and whether the data could tell.

    ``indices`` are the usable frames (sane, after equilibration; default all), positions into ``series``. The
    autocorrelation time ``tau`` is estimated over their contiguous runs only. It is trusted when the usable frames
    span at least ``min_spans`` times it (emcee's rule of thumb is 50: below that the windowed estimate is biased
    low — on AR(1) series with tau = 99 and 100 frames it comes out near 8). Then frames at least ``ceil(tau)``
    apart are kept. When it cannot tell, the conservative fallback keeps one frame: the last usable one (the run's
    most evolved state), since nothing in the series shows that two of its frames are independent.

    Returns ``{'kept', 'tau', 'spans', 'reliable', 'stride'}``.
    """
    x = np.asarray(series, dtype=float)
    usable = np.arange(x.size) if indices is None else np.asarray(sorted(indices), dtype=int)
    if usable.size == 0:
        return {'kept': [], 'tau': 1.0, 'spans': 0.0, 'reliable': False, 'stride': 1}
    runs = contiguous_segments(usable)
    tau = autocorrelation_time(x, runs, window_c)  # 1 for fewer than 4 frames
    spans = usable.size / tau
    reliable = bool(spans >= min_spans)
    if not reliable:
        return {'kept': [int(usable[-1])], 'tau': tau, 'spans': spans, 'reliable': False, 'stride': int(x.size)}
    stride = max(int(np.ceil(tau)), 1)
    kept, last = [], None
    for index in usable:  # spaced by the stride in time (a gap counts as elapsed time)
        if last is None or index - last >= stride:
            kept.append(int(index))
            last = index
    return {'kept': kept, 'tau': tau, 'spans': spans, 'reliable': True, 'stride': stride}


def sanity_problem(atoms: Atoms, *, energy_per_atom: float | None = None, reference_energy_per_atom: float | None = None,
                   forces: np.ndarray | None = None, temperature: float | None = None,
                   target_temperature: float | None = None, min_distance: float = 0.6,
                   max_force: float = 20.0, max_temperature_factor: float = 3.0,
                   max_energy_jump: float = 1.0) -> str | None:
    """Why a frame from an MD looks blown up, or ``None`` if it looks physical.

    Atoms closer than ``min_distance`` Å, any force component above ``max_force`` eV/Å, a kinetic temperature
    above ``max_temperature_factor`` x the ensemble's, or an energy per atom ``max_energy_jump`` eV above the
    trajectory's reference (its median) all flag a frame.
    """
    distance = min_interatomic_distance(atoms)
    if distance < min_distance:
        return f'atoms {distance:.2f} Å apart'
    if forces is not None and np.size(forces) and np.abs(forces).max() > max_force:
        return f'force component {np.abs(forces).max():.1f} eV/Å'
    if temperature is not None and target_temperature and temperature > max_temperature_factor * target_temperature:
        return f'temperature {temperature:.0f} K vs ensemble {target_temperature:.0f} K'
    if energy_per_atom is not None and reference_energy_per_atom is not None:
        if energy_per_atom - reference_energy_per_atom > max_energy_jump:
            return f'energy {energy_per_atom - reference_energy_per_atom:.2f} eV/atom above the trajectory median'
    return None


def structure_features(frames: Sequence[Atoms], hypers: dict, species: Sequence[int] | None = None) -> np.ndarray:
    """One SOAP vector per structure: the mean power spectrum of each centre species, concatenated, normalised.

    ``species`` fixes the centre species (and their order) so features of different calls are comparable.
    """
    frames = list(frames)
    centres = sorted({int(z) for a in frames for z in a.numbers}) if species is None else list(species)
    per_species = atomic_soap(frames, hypers, species=centres)
    blocks = []
    for z in centres:
        values, samples = per_species.get(z, (None, None))
        width = next(v.shape[1] for v, _ in per_species.values())
        mean = np.zeros((len(frames), width))
        if values is not None:
            for i in range(len(frames)):
                rows = values[samples[:, 0] == i]
                if len(rows):
                    mean[i] = rows.mean(axis=0)
        blocks.append(mean)
    features = np.hstack(blocks)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.where(norms > 0, norms, 1.0)


def select_diverse(candidates: Sequence[Atoms], n_select: int, hypers: dict, existing: Sequence[Atoms] = (),
                   tolerance: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """Structure-level FPS: indices of up to ``n_select`` candidates farthest from each other and from
    ``existing``, and the distance of each pick to everything chosen or existing before it.

    Picks stop once the farthest remaining candidate is within ``tolerance`` of what is held: a duplicate of a
    training frame (or of another pick) is never selected, so fewer than ``n_select`` may come back.
    """
    species = sorted({int(z) for a in list(candidates) + list(existing) for z in a.numbers})
    features = structure_features(candidates, hypers, species)
    known = structure_features(existing, hypers, species) if len(existing) else None
    picked, distances = farthest_point_sampling(features, min(n_select, len(features)), already_selected=known)
    keep = np.cumprod(distances > tolerance).astype(bool)  # FPS distances only decrease: stop at the first tie
    return picked[keep], distances[keep]


#: The selectors the loop knows: what each needs and does.
SELECTORS = {
    'random': 'uniformly random among the decorrelated candidates (the baseline every selector must beat)',
    'fps': 'farthest-point sampling on SOAP, against the training set and each other (the BaTiO3-GAP paper)',
    'uncertainty': "candidates whose uncertainty score lies between the two trust levels (DP-GEN's rule), "
                   'at random among them',
    'fps+uncertainty': 'farthest-point sampling among the candidates above the lower trust level (and below the '
                       'upper one)',
}
#: The selectors that score candidates with an uncertainty (``UNCERTAINTY_SOURCES``).
NEEDS_UNCERTAINTY = ('uncertainty', 'fps+uncertainty')
#: Where an uncertainty selector's score comes from, and its name in the scoring task's rows.
UNCERTAINTY_SOURCES = {
    # DP-GEN's model deviation: the largest per-atom RMS distance of a committee's member forces from their mean (eV/Å)
    'committee': 'max_force_deviation',
    # quippy's own GP predictive variance of each atom's local energy, for the loop's GAP alone: its largest
    # standard deviation (eV). Measured as the better-ranked of the two on our fits (benchmarks/uncertainty_calibration.py)
    'gap_variance': 'max_local_energy_std',
}


def checked_band(band: Sequence[float], name: str) -> tuple[float, float]:
    """``(lower, upper)`` of a trust band (levels on the deviation, or target errors), refused unless
    0 <= lower < upper; ``name`` says which band in the message."""
    try:
        lower, upper = (float(x) for x in band)
    except (TypeError, ValueError):
        raise ValueError(f'{name} must be [lower, upper], got {band!r}') from None
    if not 0 <= lower < upper:
        raise ValueError(f'{name} must satisfy 0 <= lower < upper, got {lower}, {upper}')
    return lower, upper


def trust_bands(deviations: Sequence[float], lower: float, upper: float) -> np.ndarray:
    """Band of each candidate: 0 below ``lower`` (the committee agrees: nothing to learn), 1 between (worth a label),
    2 at or above ``upper`` (so uncertain the frame is likely unphysical)."""
    lower, upper = checked_band((lower, upper), 'trust levels')
    deviations = np.asarray(deviations, dtype=float)
    return np.where(deviations < lower, 0, np.where(deviations < upper, 1, 2))


def select_frames(selector: str, candidates: Sequence[Atoms], n_select: int, *, hypers: dict | None = None,
                  existing: Sequence[Atoms] = (), deviations: Sequence[float] | None = None,
                  trust: tuple[float, float] | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of up to ``n_select`` candidates picked by ``selector`` (see ``SELECTORS``) and a score per pick
    (FPS distance for the FPS selectors, the uncertainty score for ``uncertainty``, 0 for ``random``)."""
    if selector not in SELECTORS:
        raise ValueError(f'unknown selector `{selector}`; known: {", ".join(SELECTORS)}')
    rng = np.random.default_rng(seed)
    pool = np.arange(len(candidates))
    if selector in NEEDS_UNCERTAINTY:
        if deviations is None or trust is None:
            raise ValueError(f'selector `{selector}` needs uncertainty scores and trust levels')
        if len(deviations) != len(candidates):
            raise ValueError(f'{len(deviations)} uncertainty scores for {len(candidates)} candidates')
        pool = np.flatnonzero(trust_bands(deviations, *trust) == 1)
    if len(pool) == 0 or n_select < 1:
        return np.zeros(0, dtype=int), np.zeros(0)
    if selector in ('random', 'uncertainty'):
        picked = np.sort(rng.choice(pool, size=min(n_select, len(pool)), replace=False))
        scores = np.zeros(len(picked)) if selector == 'random' else np.asarray(deviations, dtype=float)[picked]
        return picked, scores
    if hypers is None:
        raise ValueError(f'selector `{selector}` needs SOAP hyperparameters')
    picked, distances = select_diverse([candidates[i] for i in pool], n_select, hypers, existing)
    return pool[picked], distances


def calibrate_trust(deviations: Sequence[float], errors: Sequence[float], target: tuple[float, float],
                    min_pairs: int = 4) -> dict:
    """Trust levels on the committee deviation that correspond to the ``target`` band of *true* maximum force errors.

    A committee's deviation underestimates the error of its members by a factor that depends on the model and the
    data (DP-GEN users tune the levels by hand for that reason). Here the factor is measured: the median, over
    frames already labelled, of true max force error / committee max force deviation; the levels are the target
    errors divided by it. With fewer than ``min_pairs`` labelled frames the factor is 1 (stated as uncalibrated).
    """
    lower, upper = checked_band(target, 'trust targets')
    deviations, errors = np.asarray(deviations, dtype=float), np.asarray(errors, dtype=float)
    usable = (deviations > 0) & np.isfinite(deviations) & np.isfinite(errors)
    calibrated = int(usable.sum()) >= min_pairs
    factor = float(np.median(errors[usable] / deviations[usable])) if calibrated else 1.0
    correlation = None  # JSON-safe: undefined below two pairs or for constant values
    if calibrated and np.std(deviations[usable]) > 0 and np.std(errors[usable]) > 0:
        correlation = float(np.corrcoef(deviations[usable], errors[usable])[0, 1])
    return {'lower': lower / factor, 'upper': upper / factor, 'factor': factor, 'calibrated': calibrated,
            'num_pairs': int(usable.sum()), 'target_errors': [lower, upper],
            'pearson_correlation': correlation}
