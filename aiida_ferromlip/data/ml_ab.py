"""VASP's machine-learning training-set file (``ML_AB`` / ``ML_ABN``, VASP >= 6.3) to and from labelled ASE frames.

Layout (VASP wiki "ML_AB"): a header — ``1.0 Version``, then blocks ``The number of configurations``, ``The maximum
number of atom type``, ``The atom types in the data file``, ``The maximum number of atoms per system``, ``The
maximum number of atoms per atom type``, ``Reference atomic energy (eV)``, ``Atomic mass``, ``The numbers of basis
sets per atom type``, and one ``Basis set for <element>`` block per type — then one block per configuration:
``Configuration num. <k>``, ``System name``, ``The number of atom types``, ``The number of atoms``, ``Atom types
and atom numbers``, an optional ``CTIFOR``, ``Primitive lattice vectors (ang.)``, ``Atomic positions (ang.)``
(Cartesian), ``Total energy (eV)``, ``Forces (eV ang.^-1)`` and ``Stress (kbar)`` (``XX YY ZZ`` then ``XY YZ ZX``).
Every title line sits between separator lines of ``*``, ``=`` or ``-``.

The stress is VASP's OUTCAR ``in kB`` line (positive = compressive); it becomes ASE's stress (eV/Å^3, positive =
tensile) through ASE's own converter for that line, so both follow one convention. Why hand-written: neither ASE
nor pymatgen reads ML_AB. The reader is strict: a title that is not the expected one, a number of rows that does
not match the stated atom count, units it does not know, or a file that ends early raise ``MlAbError`` naming the
line and configuration — a half-read file never becomes a TrainingSet.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from aiida import orm
from aiida.engine import calcfunction
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_masses, atomic_numbers
from ase.io.vasp_parsers.vasp_outcar_parsers import convert_vasp_outcar_stress
from ase.stress import full_3x3_to_voigt_6_stress

from aiida_ferromlip.data.training_set import TrainingSet

_SEPARATOR = re.compile(r'^\s*(\*+|=+|-+)\s*$')
_STARS, _EQUALS, _DASHES = '*' * 50, '=' * 50, '-' * 50

#: Titles whose units the reader knows; a title naming other units (``Total energy (Ha)``) is refused.
_UNITS = {'Reference atomic energy': '(eV)', 'Primitive lattice vectors': '(ang.)', 'Atomic positions': '(ang.)',
          'Total energy': '(eV)', 'Forces': '(eV ang.^-1)', 'Stress': '(kbar)'}


class MlAbError(ValueError):
    """An ML_AB file that cannot be read: the message names the line and, inside a configuration, its number."""


class _Lines:
    """The file's lines with a cursor; every error says where it happened."""

    def __init__(self, text: str):
        self.lines = text.splitlines()
        self.index = 0
        self.configuration: int | None = None

    def error(self, message: str, line: int | None = None) -> MlAbError:
        where = f'line {(self.index if line is None else line) + 1}'
        if self.configuration is not None:
            where = f'configuration {self.configuration}, {where}'
        return MlAbError(f'ML_AB {where}: {message}')

    def next_content(self, expecting: str) -> str:
        """The next line that is not a separator (nor blank)."""
        while self.index < len(self.lines):
            line = self.lines[self.index]
            self.index += 1
            if line.strip() and not _SEPARATOR.match(line):
                return line.strip()
        raise self.error(f'the file ends where {expecting} was expected (truncated?)', len(self.lines) - 1)

    def title(self, expected: str) -> None:
        found = self.next_content(f'the title `{expected}`')
        if found != expected:
            for name, unit in _UNITS.items():
                if expected.startswith(name) and found.startswith(name):
                    raise self.error(f'`{found}`: units not recognised; the reader knows `{name} {unit}`', self.index - 1)
            raise self.error(f'expected the title `{expected}`, found `{found}`', self.index - 1)

    def values(self, expecting: str) -> list[str]:
        """Whitespace-separated tokens up to the next separator (a block spread over several lines)."""
        tokens = self.next_content(expecting).split()
        while self.index < len(self.lines) and not _SEPARATOR.match(self.lines[self.index]):
            tokens += self.lines[self.index].split()
            self.index += 1
        return tokens

    def integer(self, expecting: str) -> int:
        token = self.next_content(expecting)
        try:
            return int(token)
        except ValueError:
            raise self.error(f'{expecting} should be an integer, got `{token}`', self.index - 1) from None

    def rows(self, count: int, width: int, expecting: str) -> np.ndarray:
        """``count`` rows of ``width`` numbers, followed by a separator or the end of the file."""
        start = self.index
        tokens = self.values(expecting)
        try:
            numbers = np.array([float(t) for t in tokens])
        except ValueError:
            raise self.error(f'{expecting}: non-numeric entry among `{" ".join(tokens[:6])} ...`', start) from None
        if numbers.size != count * width:
            raise self.error(f'{expecting}: expected {count} rows of {width} numbers, found {numbers.size} numbers',
                             start)
        return numbers.reshape(count, width)


def read_ml_ab(text: str) -> tuple[list[Atoms], dict]:
    """Labelled frames (energy, forces, stress as ASE single-point results) and the header of an ML_AB file.

    Each frame's ``info`` holds ``ml_ab_configuration`` (its number in the file), ``system_name`` and, when
    present, ``ctifor`` (the Bayesian error threshold when VASP picked it).
    """
    lines = _Lines(text)
    version = lines.next_content('the version line')
    if not version.endswith('Version'):
        raise lines.error(f'not an ML_AB file: the first line is `{version}`, not `<n> Version`', 0)
    lines.title('The number of configurations')
    declared = lines.integer('the number of configurations')
    lines.title('The maximum number of atom type')
    lines.integer('the maximum number of atom types')
    lines.title('The atom types in the data file')
    types = lines.values('the atom types')
    unknown = [t for t in types if t not in atomic_numbers]
    if unknown:
        raise lines.error(f'unknown element(s) {unknown} among the atom types')
    for title in ('The maximum number of atoms per system', 'The maximum number of atoms per atom type'):
        lines.title(title)
        lines.integer(title.lower())
    lines.title('Reference atomic energy (eV)')
    reference = lines.rows(1, len(types), 'the reference atomic energies')[0]
    lines.title('Atomic mass')
    lines.rows(1, len(types), 'the atomic masses')
    lines.title('The numbers of basis sets per atom type')
    basis = lines.rows(1, len(types), 'the numbers of basis sets').astype(int)[0]
    for element, size in zip(types, basis):
        lines.title(f'Basis set for {element}')
        if size > 0:
            lines.rows(int(size), 2, f'the basis set of {element}')

    frames = []
    while True:
        try:
            heading = lines.next_content('a configuration')
        except MlAbError:
            break
        match = re.fullmatch(r'Configuration num\.\s+(\d+)', heading)
        if not match:
            raise lines.error(f'expected `Configuration num. <k>`, found `{heading}`', lines.index - 1)
        lines.configuration = int(match.group(1))
        frames.append(_read_configuration(lines))
    lines.configuration = None
    if len(frames) != declared:
        raise lines.error(f'the header declares {declared} configurations but the file holds {len(frames)} '
                          f'(truncated?)', len(lines.lines) - 1)
    header = {'version': version, 'atom_types': types, 'reference_energies_eV': reference.tolist(),
              'num_configurations': declared}
    return frames, header


def _read_configuration(lines: _Lines) -> Atoms:
    start = lines.index - 1
    lines.title('System name')
    name = lines.next_content('the system name')
    lines.title('The number of atom types')
    num_types = lines.integer('the number of atom types')
    lines.title('The number of atoms')
    num_atoms = lines.integer('the number of atoms')
    lines.title('Atom types and atom numbers')
    symbols = []
    for _ in range(num_types):
        row = lines.next_content('an atom type and its number').split()
        if len(row) != 2 or row[0] not in atomic_numbers or not row[1].isdigit():
            raise lines.error(f'expected `<element> <count>`, found `{" ".join(row)}`', lines.index - 1)
        symbols += [row[0]] * int(row[1])
    if len(symbols) != num_atoms:
        raise lines.error(f'the atom types add up to {len(symbols)} atoms but `The number of atoms` is {num_atoms}',
                          start)
    heading = lines.next_content('`CTIFOR` or the lattice vectors')
    ctifor = None
    if heading == 'CTIFOR':
        ctifor = float(lines.next_content('the CTIFOR value'))
        lines.title('Primitive lattice vectors (ang.)')
    else:
        lines.index -= 1
        lines.title('Primitive lattice vectors (ang.)')
    cell = lines.rows(3, 3, 'the lattice vectors')
    lines.title('Atomic positions (ang.)')
    positions = lines.rows(num_atoms, 3, 'the atomic positions')
    lines.title('Total energy (eV)')
    energy = float(lines.rows(1, 1, 'the total energy')[0, 0])
    lines.title('Forces (eV ang.^-1)')
    forces = lines.rows(num_atoms, 3, 'the forces')
    lines.title('Stress (kbar)')
    lines.title('XX YY ZZ')
    diagonal = lines.rows(1, 3, 'the stress XX YY ZZ')[0]
    lines.title('XY YZ ZX')
    off_diagonal = lines.rows(1, 3, 'the stress XY YZ ZX')[0]
    atoms = Atoms(symbols, positions=positions, cell=cell, pbc=True)
    stress = convert_vasp_outcar_stress(np.concatenate([diagonal, off_diagonal]))
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=stress)
    atoms.info.update({'ml_ab_configuration': lines.configuration, 'system_name': name})
    if ctifor is not None:
        atoms.info['ctifor'] = ctifor
    return atoms


def write_ml_ab(frames: Sequence[Atoms], system_name: str | None = None) -> str:
    """An ML_AB file of labelled ``frames`` (energy, forces, stress), e.g. to seed VASP's on-the-fly learning with
    labels from elsewhere. Atoms are grouped by type in each configuration, as VASP writes them. No VASP ran here
    to confirm it reads these files: they are what the reader of this module (and the format's description)
    expects."""
    types = list(dict.fromkeys(s for atoms in frames for s in atoms.get_chemical_symbols()))
    out = ['1.0 Version']

    def block(title, *rows, top=_STARS):
        out.extend([top, f'     {title}', _DASHES, *rows])

    def triples(values, fmt):
        return ['  ' + '  '.join(fmt(v) for v in values[i:i + 3]) for i in range(0, len(values), 3)]

    block('The number of configurations', f'{len(frames):12d}')
    block('The maximum number of atom type', f'{len(types):12d}')
    block('The atom types in the data file', *triples(types, str))
    block('The maximum number of atoms per system', f'{max(len(a) for a in frames):12d}')
    per_type = max(a.get_chemical_symbols().count(t) for a in frames for t in types)
    block('The maximum number of atoms per atom type', f'{per_type:12d}')
    block('Reference atomic energy (eV)', *triples([0.0] * len(types), lambda v: f'{v:22.16f}'))
    block('Atomic mass', *triples([atomic_masses[atomic_numbers[t]] for t in types], lambda v: f'{v:22.16f}'))
    # one local reference configuration per type (configuration, atom of that type in it): VASP's sparse set is
    # rebuilt when it learns from the file; a valid entry keeps readers that expect a non-empty set working
    block('The numbers of basis sets per atom type', *triples([1] * len(types), lambda v: f'{v:12d}'))
    for element in types:
        first = next(k for k, atoms in enumerate(frames, start=1) if element in atoms.get_chemical_symbols())
        block(f'Basis set for {element}', f'{first:12d}{1:12d}')
    for index, atoms in enumerate(frames, start=1):
        symbols = atoms.get_chemical_symbols()
        present = list(dict.fromkeys(symbols))
        order = np.concatenate([[i for i, s in enumerate(symbols) if s == t] for t in present]).astype(int)
        # ASE stress (eV/Å^3, tensile positive, Voigt xx yy zz yz xz xy) -> VASP kbar XX YY ZZ XY YZ ZX
        voigt = full_3x3_to_voigt_6_stress(atoms.get_stress(voigt=False)) if _has_stress(atoms) else np.zeros(6)
        kbar = -voigt[[0, 1, 2, 5, 3, 4]] / convert_vasp_outcar_stress(np.full(6, -1.0))[0]
        out.extend([_STARS, f'     Configuration num.{index:7d}'])
        block('System name', f'     {system_name or atoms.get_chemical_formula()}', top=_EQUALS)
        block('The number of atom types', f'{len(present):8d}', top=_EQUALS)
        block('The number of atoms', f'{len(atoms):12d}', top=_EQUALS)
        block('Atom types and atom numbers', *[f'     {t:2s}{symbols.count(t):8d}' for t in present])
        block('Primitive lattice vectors (ang.)', *_rows(atoms.cell.array), top=_EQUALS)
        block('Atomic positions (ang.)', *_rows(atoms.positions[order]), top=_EQUALS)
        block('Total energy (eV)', f'{atoms.get_potential_energy():26.16f}', top=_EQUALS)
        block('Forces (eV ang.^-1)', *_rows(atoms.get_forces()[order]), top=_EQUALS)
        block('Stress (kbar)', top=_EQUALS)
        out.extend(['     XX YY ZZ', _DASHES, *_rows(kbar[None, :3]), _DASHES, '     XY YZ ZX', _DASHES,
                    *_rows(kbar[None, 3:])])
    out.append(_STARS)
    return '\n'.join(out) + '\n'


def _rows(array) -> list[str]:
    return ['  '.join(f'{v:24.16f}' for v in row) for row in np.atleast_2d(array)]


def _has_stress(atoms: Atoms) -> bool:
    try:
        atoms.get_stress()
    except Exception:  # no stress in this frame's results
        return False
    return True


@calcfunction
def training_set_from_ml_ab(ml_ab: orm.SinglefileData) -> TrainingSet:
    """The configurations of an ML_AB file as a TrainingSet; each frame's origin names the file node and the
    configuration's number in it (and VASP's error threshold CTIFOR when the file records one)."""
    try:
        text = ml_ab.get_content()
    except UnicodeDecodeError as exception:
        raise MlAbError(f'{ml_ab.filename} is not a text file: {exception}') from None
    frames, header = read_ml_ab(text)
    origins = [{'labeller': 'vasp-ml_ab', 'ml_ab_uuid': ml_ab.uuid, 'ml_ab_filename': ml_ab.filename,
                'configuration': atoms.info['ml_ab_configuration'], 'system_name': atoms.info['system_name'],
                **({'ctifor': atoms.info['ctifor']} if 'ctifor' in atoms.info else {})} for atoms in frames]
    training_set = TrainingSet(frames=frames, origins=origins)
    training_set.base.attributes.set('ml_ab_header', header)
    return training_set
