"""Finite-displacement phonons with phonopy (no AiiDA): displacements, bands along seekpath's path, instabilities.

The minimalist paper (Fig. 3) compares the phonons of the cubic reference phase computed with the MLIP and with DFT; the key
test is that the potential finds the same unstable (imaginary) modes and no spurious ones. Frequencies follow
phonopy's convention: an imaginary frequency is reported as a negative number (THz).
"""

from __future__ import annotations


import numpy as np
from ase import Atoms

from aiida_ferromlip.analysis.plots import figure_png

#: A mode is unstable below this frequency (THz; phonopy reports imaginary frequencies as negative numbers):
#: a little below zero, so the numerical noise of the acoustic modes at Γ is not taken for an instability.
UNSTABLE_BELOW_THZ = -0.1


def phonopy_object(atoms: Atoms, supercell, distance: float):
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    unit = PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell.array,
                        scaled_positions=atoms.get_scaled_positions())
    phonon = Phonopy(unit, supercell_matrix=np.diag(supercell), primitive_matrix='auto')
    phonon.generate_displacements(distance=distance)
    return phonon


def displaced_supercells(atoms: Atoms, supercell, distance: float) -> list[Atoms]:
    phonon = phonopy_object(atoms, supercell, distance)
    return [Atoms(cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True)
            for cell in phonon.supercells_with_displacements]


def bands(atoms: Atoms, supercell, distance: float, forces: list[np.ndarray], npoints: int = 51) -> dict:
    """Band structure along seekpath's standard path and the frequencies at its vertices, from ``forces`` on the
    displaced supercells (in phonopy's order)."""
    phonon = phonopy_object(atoms, supercell, distance)
    phonon.forces = np.asarray(forces)
    return band_structure(phonon, npoints)


def band_structure(phonon, npoints: int = 51) -> dict:
    """:func:`bands` of a ``Phonopy`` object that holds its forces (e.g. aiida-phonopy's
    ``PhonopyData.get_phonopy_instance()``)."""
    phonon.produce_force_constants()
    phonon.auto_band_structure(npoints=npoints)
    structure = phonon.band_structure
    labels = iter(label.replace('$', '').replace('\\mathrm{', '').replace('}', '').replace('\\Gamma', 'Γ')
                  for label in structure.labels)
    connections = list(structure.path_connections)
    # phonopy names a segment's start only where the path jumps (segment not connected to the previous one);
    # ticks mark the segment boundaries, `X|R` where the path jumps from X to R.
    vertices, ticks = [], []
    for index, segment in enumerate(structure.qpoints):
        if index == 0 or not connections[index - 1]:
            start = next(labels)
            vertices.append((start, np.asarray(segment[0])))
            if index == 0:
                ticks.append(start)
            else:
                ticks[-1] = f'{ticks[-1]}|{start}'
        end = next(labels)
        vertices.append((end, np.asarray(segment[-1])))
        ticks.append(end)
    phonon.run_qpoints(np.array([q for _, q in vertices]))
    return {'distances': [np.asarray(d) for d in structure.distances],
            'frequencies': [np.asarray(f) for f in structure.frequencies],
            'labels': [label for label, _ in vertices], 'ticks': ticks,
            'vertices': np.array([q for _, q in vertices]),
            'vertex_frequencies': np.asarray(phonon.qpoints.frequencies)}


def unstable_modes(result: dict, threshold: float = UNSTABLE_BELOW_THZ) -> dict[str, list[float]]:
    """``{q-point label: [imaginary frequencies (negative, THz)]}`` at the vertices of the band path."""
    modes: dict[str, list[float]] = {}
    for label, frequencies in zip(result['labels'], result['vertex_frequencies']):
        unstable = sorted(round(float(f), 2) for f in frequencies if f < threshold)
        if unstable:
            modes.setdefault(label, unstable)
    return modes


def frequency_rmse(reference: dict, model: dict) -> float:
    """RMSE (THz) between the two band structures, band by band along the whole path."""
    diff = np.concatenate([m - r for r, m in zip(reference['frequencies'], model['frequencies'])])
    return float(np.sqrt(np.mean(diff**2)))


def overlay_png(reference: dict, model: dict, title: str, names=('reference', 'potential')) -> bytes:
    """The papers' style: reference bands as lines, the potential's as dashed lines, imaginary as negative."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for result, style, name in ((reference, '-', names[0]), (model, '--', names[1])):
        colour = 'k' if style == '-' else 'tab:red'
        for index, (distance, frequency) in enumerate(zip(result['distances'], result['frequencies'])):
            lines = axis.plot(distance, frequency, style, color=colour, lw=1)
            if index == 0:
                lines[0].set_label(name)
    ticks = [reference['distances'][0][0]] + [d[-1] for d in reference['distances']]
    for tick in ticks:
        axis.axvline(tick, color='0.8', lw=0.5)
    axis.axhline(0, color='0.5', lw=0.5)
    axis.set_xticks(ticks)
    axis.set_xticklabels(reference['ticks'])
    axis.set_xlim(ticks[0], ticks[-1])
    axis.set_ylabel('frequency (THz; imaginary < 0)')
    axis.set_title(title)
    axis.legend(loc='upper right', fontsize=8)
    return figure_png(figure, dpi=110)
