"""Selection of MD frames for labelling: physical sanity, decorrelation, and structure-level FPS on SOAP.

Seed 003 keeps only frames spaced by the energy autocorrelation time, then the most diverse by farthest-point
sampling on SOAP features; candidates must also be far from what the training set already holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms

from aiida_ferromlip.analysis.soap import atomic_soap, farthest_point_sampling
from aiida_ferromlip.validation import min_interatomic_distance


def autocorrelation_time(series: Sequence[float]) -> float:
    """Integrated autocorrelation time (in frames) of ``series``, with Sokal's automatic window (c = 5).

    Written here rather than imported: it is ten lines of numpy, and the libraries that ship it (emcee, pymbar)
    would add a dependency for one function.
    """
    x = np.asarray(series, dtype=float)
    if x.size < 4 or np.allclose(x, x[0]):
        return 1.0
    x = x - x.mean()
    n = x.size
    spectrum = np.fft.rfft(x, n=2 * n)
    acf = np.fft.irfft(spectrum * np.conjugate(spectrum))[:n]
    acf /= acf[0]
    tau = 1.0
    for window in range(1, n):
        tau = 1.0 + 2.0 * acf[1:window + 1].sum()
        if window >= 5 * tau:
            break
    return float(max(tau, 1.0))


def decorrelated_indices(num_frames: int, tau: float, skip: int = 0) -> np.ndarray:
    """Frames ``skip, skip + s, skip + 2s, ...`` with ``s = ceil(tau)``: one per autocorrelation time."""
    step = max(int(np.ceil(tau)), 1)
    return np.arange(skip, num_frames, step)


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
