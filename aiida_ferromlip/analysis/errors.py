"""Prediction errors of a potential against reference labels, in the papers' units, and parity plots.

Energies per formula unit (meV/f.u., the minimalist paper) and per atom (meV/atom), force components (meV/Å), stress
components (kbar).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.stress import full_3x3_to_voigt_6_stress
from ase.units import GPa

from aiida_ferromlip.analysis.plots import figure_png
from aiida_ferromlip.materials.units import formula_units

#: eV/Å^3 -> kbar
EV_A3_TO_KBAR = 10.0 / GPa


def _stats(errors: np.ndarray) -> tuple[float, float]:
    errors = np.asarray(errors, dtype=float).ravel()
    if errors.size == 0:
        return float('nan'), float('nan')
    return float(np.sqrt(np.mean(errors**2))), float(np.mean(np.abs(errors)))


def paired_labels(frames: Sequence[Atoms], reference: dict, predicted: dict) -> dict[str, np.ndarray]:
    """Collect reference and predicted labels from ``frames``' info/arrays.

    ``reference``/``predicted`` name the keys: ``{'energy': ..., 'forces': ..., 'stress': ...}``; a stress key
    may hold 6 Voigt components (eV/Å^3) or, for ``virial``, 9 numbers in eV.
    """
    out = {k: [] for k in ('ref_energy', 'pred_energy', 'n_atoms', 'n_fu', 'ref_forces', 'pred_forces',
                           'ref_stress', 'pred_stress')}
    for atoms in frames:
        out['ref_energy'].append(atoms.info[reference['energy']])
        out['pred_energy'].append(atoms.info[predicted['energy']])
        out['n_atoms'].append(len(atoms))
        out['n_fu'].append(formula_units(atoms))
        out['ref_forces'].append(atoms.arrays[reference['forces']])
        out['pred_forces'].append(atoms.arrays[predicted['forces']])
        ref_stress, pred_stress = (_voigt(atoms, d.get('stress')) for d in (reference, predicted))
        if ref_stress is not None and pred_stress is not None:
            out['ref_stress'].append(ref_stress)
            out['pred_stress'].append(pred_stress)
    return _as_arrays(out)


def predicted_labels(frames: Sequence[Atoms], calculator) -> dict[str, np.ndarray]:
    """Reference labels (each frame's own calculator results) paired with ``calculator``'s predictions."""
    out = {k: [] for k in ('ref_energy', 'pred_energy', 'n_atoms', 'n_fu', 'ref_forces', 'pred_forces',
                           'ref_stress', 'pred_stress')}
    for atoms in frames:
        results = atoms.calc.results
        probe = atoms.copy()
        probe.calc = calculator
        out['ref_energy'].append(results['energy'])
        out['pred_energy'].append(probe.get_potential_energy())
        out['n_atoms'].append(len(atoms))
        out['n_fu'].append(formula_units(atoms))
        out['ref_forces'].append(results['forces'])
        out['pred_forces'].append(probe.get_forces())
        if results.get('stress') is not None:
            out['ref_stress'].append(results['stress'])
            out['pred_stress'].append(probe.get_stress())
    return _as_arrays(out)


def labels_from_pairs(reference: Sequence[Atoms], predicted: Sequence[Atoms]) -> dict[str, np.ndarray]:
    """Reference and predicted labels of the same frames, each list carrying its labels on its calculator."""
    out = {k: [] for k in ('ref_energy', 'pred_energy', 'n_atoms', 'n_fu', 'ref_forces', 'pred_forces',
                           'ref_stress', 'pred_stress')}
    for ref, pred in zip(reference, predicted):
        ref_results, pred_results = ref.calc.results, pred.calc.results
        out['ref_energy'].append(ref_results['energy'])
        out['pred_energy'].append(pred_results['energy'])
        out['n_atoms'].append(len(ref))
        out['n_fu'].append(formula_units(ref))
        out['ref_forces'].append(ref_results['forces'])
        out['pred_forces'].append(pred_results['forces'])
        ref_stress, pred_stress = ref_results.get('stress'), pred_results.get('stress')
        if ref_stress is not None and pred_stress is not None and np.all(np.isfinite(ref_stress)) \
                and np.all(np.isfinite(pred_stress)):
            out['ref_stress'].append(np.asarray(ref_stress).ravel()[:6] if np.size(ref_stress) == 6 else
                                     full_3x3_to_voigt_6_stress(np.asarray(ref_stress).reshape(3, 3)))
            out['pred_stress'].append(np.asarray(pred_stress).ravel()[:6] if np.size(pred_stress) == 6 else
                                      full_3x3_to_voigt_6_stress(np.asarray(pred_stress).reshape(3, 3)))
    return _as_arrays(out)


def _as_arrays(out: dict) -> dict[str, np.ndarray]:
    arrays = {k: np.asarray(v, dtype=float) for k, v in out.items() if k not in ('ref_forces', 'pred_forces')}
    for key in ('ref_forces', 'pred_forces'):
        arrays[key] = np.concatenate(out[key]) if out[key] else np.zeros((0, 3))
    return arrays


def _voigt(atoms: Atoms, key: str | None) -> np.ndarray | None:
    if key is None or key not in atoms.info:
        return None
    value = np.asarray(atoms.info[key], dtype=float).ravel()
    if value.size == 9:  # a virial (eV): stress = -virial / volume
        from ase.stress import full_3x3_to_voigt_6_stress

        return full_3x3_to_voigt_6_stress(-value.reshape(3, 3) / atoms.get_volume())
    return value


def error_metrics(labels: dict[str, np.ndarray]) -> dict[str, float]:
    """RMSE and MAE of energies (meV/f.u., meV/atom), forces (meV/Å) and stress (kbar)."""
    d_energy = labels['pred_energy'] - labels['ref_energy']
    metrics = {'num_frames': int(d_energy.size)}
    for name, errors in (('energy_per_fu_meV', 1000 * d_energy / labels['n_fu']),
                         ('energy_per_atom_meV', 1000 * d_energy / labels['n_atoms']),
                         ('forces_meV_per_A', 1000 * (labels['pred_forces'] - labels['ref_forces'])),
                         ('stress_kbar', EV_A3_TO_KBAR * (labels['pred_stress'] - labels['ref_stress']))):
        rmse, mae = _stats(errors)
        metrics[f'{name}_rmse'] = rmse
        metrics[f'{name}_mae'] = mae
    metrics['num_frames_with_stress'] = int(len(labels['ref_stress']))
    # The scale of what is predicted, to read the errors against (a 100 meV/Å error means little at 5 eV/Å).
    metrics['forces_reference_rms_meV_per_A'] = float(1000 * np.sqrt(np.mean(labels['ref_forces'] ** 2)))
    if len(labels['ref_stress']):
        metrics['stress_reference_rms_kbar'] = float(EV_A3_TO_KBAR * np.sqrt(np.mean(labels['ref_stress'] ** 2)))
    return metrics


def parity_plot_png(labels: dict[str, np.ndarray], title: str = '') -> bytes:
    """Three-panel parity plot (energy per f.u., force components, stress components) as PNG bytes."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    panels = [
        ('energy (eV/f.u.)', labels['ref_energy'] / labels['n_fu'], labels['pred_energy'] / labels['n_fu']),
        ('force components (eV/Å)', labels['ref_forces'].ravel(), labels['pred_forces'].ravel()),
        ('stress components (kbar)', EV_A3_TO_KBAR * labels['ref_stress'].ravel(),
         EV_A3_TO_KBAR * labels['pred_stress'].ravel()),
    ]
    figure, axes = plt.subplots(1, 3, figsize=(12, 4))
    for axis, (name, reference, predicted) in zip(axes, panels):
        axis.set_title(name)
        axis.set_xlabel('reference')
        axis.set_ylabel('model')
        if reference.size:
            axis.scatter(reference, predicted, s=6, alpha=0.6)
            low, high = float(min(reference.min(), predicted.min())), float(max(reference.max(), predicted.max()))
            axis.plot([low, high], [low, high], 'k--', lw=0.8)
        else:
            axis.text(0.5, 0.5, 'no data', ha='center', transform=axis.transAxes)
    if title:
        figure.suptitle(title)
    return figure_png(figure, dpi=110)
