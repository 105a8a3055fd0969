"""``TrainingSet``: labelled frames (structure + energy, forces, stress) with the origin of every label.

Frames are stored as concatenated numpy arrays (one array per quantity, atoms of all frames back to back),
so a set of thousands of 40-atom frames is a handful of ``.npy`` files in the repository rather than thousands
of nodes. Each frame keeps an *origin* record (which process labelled it, from which input structure), and the
provenance graph links the set to those processes through the calcfunctions that build it.

Units: energies in eV, forces in eV/Å, stress in eV/Å^3 with ASE's sign convention (positive = tensile),
stored as a full 3x3 tensor; frames without stress hold NaN there.
"""

from __future__ import annotations

import io
import math
import pathlib
from collections.abc import Iterable, Sequence

import numpy as np
from aiida import orm
from aiida.engine import calcfunction
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

from aiida_ferromlip.materials.units import formula_units

__all__ = ('TrainingSet', 'formula_units', 'merge_training_sets', 'training_set_from_extxyz', 'trajectory_frames')


def trajectory_frames(trajectory: orm.TrajectoryData, skip_fraction: float = 0.0) -> list[Atoms]:
    """Frames of a sampler's TrajectoryData as ASE atoms (no calculator), after the first ``skip_fraction`` of it
    (always at least the last frame)."""
    positions, cells = trajectory.get_positions(), trajectory.get_cells()
    pbc = trajectory.pbc if trajectory.pbc is not None else [True, True, True]
    first = min(int(np.floor(skip_fraction * len(positions))), len(positions) - 1)
    return [Atoms(symbols=trajectory.symbols, positions=positions[i], cell=cells[i], pbc=pbc)
            for i in range(first, len(positions))]



class TrainingSet(orm.ArrayData):
    """A set of labelled frames with the origin (labelling process) of every frame."""

    _ARRAYS = ('numbers', 'positions', 'forces', 'cells', 'pbc', 'energies', 'stresses', 'n_atoms')

    def __init__(self, frames: Sequence[Atoms] | None = None, origins: Sequence[dict] | None = None, **kwargs):
        super().__init__(**kwargs)
        if frames is not None:
            self.set_frames(frames, origins)

    # ----------------------------------------------------------------------------------------- construction
    def set_frames(self, frames: Sequence[Atoms], origins: Sequence[dict] | None = None) -> None:
        """Store ``frames`` (ASE atoms carrying energy and forces, optionally stress) and their origins.

        :raises ValueError: if a frame lacks an energy or forces, or holds non-finite labels.
        """
        frames = list(frames)
        origins = [dict(o) for o in origins] if origins is not None else [{} for _ in frames]
        if len(origins) != len(frames):
            raise ValueError(f'got {len(frames)} frames but {len(origins)} origins')

        energies, forces, stresses = [], [], []
        for index, atoms in enumerate(frames):
            energy, frame_forces, stress = _labels_of(atoms, index)
            energies.append(energy)
            forces.append(frame_forces)
            stresses.append(stress)

        def cat(arrays, shape, dtype=float):
            return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(shape, dtype=dtype)

        self.set_array('numbers', cat([a.get_atomic_numbers() for a in frames], (0,), int))
        self.set_array('positions', cat([a.get_positions() for a in frames], (0, 3)))
        self.set_array('forces', cat(forces, (0, 3)))
        self.set_array('cells', np.array([a.cell.array for a in frames], dtype=float).reshape(-1, 3, 3))
        self.set_array('pbc', np.array([a.pbc for a in frames], dtype=bool).reshape(-1, 3))
        self.set_array('energies', np.array(energies, dtype=float))
        self.set_array('stresses', np.array(stresses, dtype=float).reshape(-1, 3, 3))
        self.set_array('n_atoms', np.array([len(a) for a in frames], dtype=int))
        self.base.attributes.set('origins', origins)
        self.base.attributes.set('num_frames', len(frames))
        species = sorted({s for a in frames for s in a.get_chemical_symbols()})
        self.base.attributes.set('species', species)
        self.base.attributes.set('labellers', sorted({o.get('labeller', 'unknown') for o in origins}))

    @classmethod
    def from_extxyz(
        cls,
        source: str | pathlib.Path | io.IOBase,
        *,
        energy_key: str = 'energy',
        forces_key: str = 'forces',
        stress_key: str = 'stress',
        origin: dict | None = None,
    ) -> TrainingSet:
        """Read labelled frames from an extended-XYZ file (e.g. a user's own DFT data).

        The keys name where the labels sit: ASE's own ``energy``/``forces``/``stress`` or any info/array key
        (``REF_energy``, ``dft_forces``...). A ``virial`` info key (eV, 9 or 3x3 numbers) is accepted when
        no stress is present, as gap_fit files carry it.

        :raises ValueError: if any frame has no energy or no forces.
        """
        from ase.io import read

        frames = read(source, index=':', format='extxyz')
        if not frames:
            raise ValueError('the extxyz file contains no frames')
        labelled = [_extract_labels(a, i, energy_key, forces_key, stress_key) for i, a in enumerate(frames)]
        origins = [{**(origin or {}), 'labeller': (origin or {}).get('labeller', 'extxyz'), 'index': i} for i in range(len(frames))]
        return cls(frames=labelled, origins=origins)

    # ---------------------------------------------------------------------------------------------- access
    @property
    def num_frames(self) -> int:
        return int(self.base.attributes.get('num_frames', 0))

    def __len__(self) -> int:
        return self.num_frames

    @property
    def species(self) -> list[str]:
        return list(self.base.attributes.get('species', []))

    @property
    def origins(self) -> list[dict]:
        return list(self.base.attributes.get('origins', []))

    @property
    def energies(self) -> np.ndarray:
        return self.get_array('energies')

    def _offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.get_array('n_atoms'))])

    def get_frame(self, index: int) -> Atoms:
        """Frame ``index`` as ASE atoms with a ``SinglePointCalculator`` holding its labels."""
        return self.get_frames([range(self.num_frames)[index]])[0]

    def to_atoms(self) -> list[Atoms]:
        """All frames as ASE atoms, each with a ``SinglePointCalculator`` holding energy, forces (and stress)."""
        return self.get_frames(range(self.num_frames))

    def get_frames(self, indices: Iterable[int]) -> list[Atoms]:
        """Frames ``indices`` (in that order) as ASE atoms with their labels; only those are built."""
        offsets = self._offsets()
        numbers, positions, forces = (self.get_array(n) for n in ('numbers', 'positions', 'forces'))
        cells, pbc, energies, stresses = (self.get_array(n) for n in ('cells', 'pbc', 'energies', 'stresses'))
        origins = self.origins
        frames = []
        for i in indices:
            sl = slice(offsets[i], offsets[i + 1])
            atoms = Atoms(numbers=numbers[sl], positions=positions[sl], cell=cells[i], pbc=pbc[i])
            results = {'energy': float(energies[i]), 'free_energy': float(energies[i]), 'forces': forces[sl].copy()}
            if np.all(np.isfinite(stresses[i])):
                results['stress'] = full_3x3_to_voigt_6_stress(stresses[i])
            atoms.calc = SinglePointCalculator(atoms, **results)
            if i < len(origins):
                atoms.info['origin'] = dict(origins[i])
            frames.append(atoms)
        return frames

    def frames_by_key(self) -> dict[str, Atoms]:
        """The frames with their labels by the ``frame_key`` of their origin (frames without one are left out):
        how the results of one set of structures are paired across labellers and models."""
        return {origin['frame_key']: frame for origin, frame in zip(self.origins, self.to_atoms())
                if 'frame_key' in origin}

    def get_structure(self, index: int) -> orm.StructureData:
        """Frame ``index`` as an (unstored) ``StructureData``."""
        atoms = self.get_frame(index)
        atoms.calc = None
        return orm.StructureData(ase=atoms)

    def write_extxyz(self, destination: str | pathlib.Path | io.IOBase, *, energy_key: str = 'energy',
                     forces_key: str = 'forces', stress_key: str = 'stress') -> None:
        """Write all frames as extended XYZ: the labels under ``energy_key`` (eV), ``forces_key`` (eV/Å) and, where
        present, ``stress_key`` (eV/Å³, 3x3, ASE's sign); ``origin_*`` keys name the labelling calculation.
        ``from_extxyz`` with the same keys reads the file back."""
        from ase.io import write

        frames = self.to_atoms()
        for atoms in frames:
            origin = atoms.info.pop('origin', {})
            # extxyz info values must be scalars or arrays: keep the provenance keys a reader can use.
            for key in ('labeller', 'process_uuid', 'structure_uuid'):
                if key in origin:
                    atoms.info[f'origin_{key}'] = str(origin[key])
            if (energy_key, forces_key, stress_key) != ('energy', 'forces', 'stress'):
                results = atoms.calc.results
                atoms.calc = None
                atoms.info[energy_key] = results['energy']
                atoms.arrays[forces_key] = results['forces']
                if 'stress' in results:
                    atoms.info[stress_key] = voigt_6_to_full_3x3_stress(results["stress"]).ravel()
        write(destination, frames, format='extxyz')

    def formula_units(self) -> np.ndarray:
        """Formula units of every frame (for energies per f.u.)."""
        return np.array([formula_units(a) for a in self.get_frames(range(self.num_frames))], dtype=int)


# ------------------------------------------------------------------------------------------------ helpers
def _labels_of(atoms: Atoms, index: int) -> tuple[float, np.ndarray, np.ndarray]:
    """Energy, forces and 3x3 stress (NaN when absent) attached to ``atoms`` through its calculator."""
    calc = atoms.calc
    results = getattr(calc, 'results', {}) if calc is not None else {}
    if 'energy' not in results:
        raise ValueError(f'frame {index} ({atoms.get_chemical_formula()}) has no energy label')
    if 'forces' not in results:
        raise ValueError(f'frame {index} ({atoms.get_chemical_formula()}) has no forces label')
    energy = float(results['energy'])
    forces = np.asarray(results['forces'], dtype=float).reshape(-1, 3)
    if forces.shape != (len(atoms), 3):
        raise ValueError(f'frame {index}: forces have shape {forces.shape}, expected ({len(atoms)}, 3)')
    stress = np.full((3, 3), np.nan)
    if results.get('stress') is not None:
        raw = np.asarray(results['stress'], dtype=float)
        stress = voigt_6_to_full_3x3_stress(raw) if raw.shape == (6,) else raw.reshape(3, 3)
    if not (math.isfinite(energy) and np.all(np.isfinite(forces))):
        raise ValueError(f'frame {index}: energy or forces are not finite')
    return energy, forces, stress


def _extract_labels(atoms: Atoms, index: int, energy_key: str, forces_key: str, stress_key: str) -> Atoms:
    """Return a copy of ``atoms`` with its labels (from info/arrays or an attached calculator) on a calculator."""
    results = dict(getattr(atoms.calc, 'results', {}) or {}) if atoms.calc is not None else {}
    energy = atoms.info.get(energy_key, results.get(energy_key))
    forces = atoms.arrays.get(forces_key, results.get(forces_key))
    stress = atoms.info.get(stress_key, results.get(stress_key))
    if energy is None:
        raise ValueError(f'extxyz frame {index} has no energy (looked for the key `{energy_key}`)')
    if forces is None:
        raise ValueError(f'extxyz frame {index} has no forces (looked for the key `{forces_key}`)')
    if stress is None and 'virial' in atoms.info:
        # gap_fit convention: virial = -stress * volume (eV).
        stress = -np.asarray(atoms.info['virial'], dtype=float).reshape(3, 3) / atoms.get_volume()
    copy = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    spc = {'energy': float(energy), 'forces': np.asarray(forces, dtype=float)}
    if stress is not None:
        spc['stress'] = np.asarray(stress, dtype=float)
    copy.calc = SinglePointCalculator(copy, **spc)
    return copy


# ---------------------------------------------------------------------------------------- calcfunctions
@calcfunction
def merge_training_sets(**training_sets: TrainingSet) -> TrainingSet:
    """Concatenate training sets (in the sorted order of their keyword names), keeping every frame's origin.

    Being a calcfunction, the merged set is linked to each input set, and through it to the processes that
    labelled every frame.
    """
    if not training_sets:
        raise ValueError('merge_training_sets needs at least one TrainingSet')
    frames, origins = [], []
    for key in sorted(training_sets):
        source = training_sets[key]
        if not isinstance(source, TrainingSet):
            raise TypeError(f'`{key}` is a {type(source).__name__}, not a TrainingSet')
        frames.extend(source.to_atoms())
        origins.extend(source.origins)
    return TrainingSet(frames=frames, origins=origins)


@calcfunction
def training_set_from_extxyz(file: orm.SinglefileData, keys: orm.Dict | None = None) -> TrainingSet:
    """Import a user's extended-XYZ file as a TrainingSet; every frame's origin is this file node and its index.

    ``keys`` may name the info/array keys holding the labels: ``{'energy_key': 'REF_energy', ...}``.
    """
    options = keys.get_dict() if keys is not None else {}
    with file.open(mode='r') as handle:
        return TrainingSet.from_extxyz(
            handle, origin={'labeller': 'extxyz', 'file_uuid': file.uuid, 'filename': file.filename}, **options
        )
