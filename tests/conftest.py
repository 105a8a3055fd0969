"""Shared fixtures: aiida-core's temporary profile, the reference labeller's code, small BaTiO3 frames."""

import pathlib
import shutil
import sys

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

pytest_plugins = ['aiida.tools.pytest_fixtures']


def executable(name: str) -> str:
    """The console script installed beside this interpreter (the project's venv), else on PATH."""
    candidate = pathlib.Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.fail(f'`{name}` is not installed: run `make setup`')
    return found


@pytest.fixture
def label_code(aiida_code_installed):
    """The real reference labeller (``ferromlip-label``) as an InstalledCode on the test localhost."""
    return aiida_code_installed(label='ferromlip-label', default_calc_job_plugin='ferromlip.reference_label',
                                filepath_executable=executable('ferromlip-label'))


def cubic_batio3(a: float = 4.0) -> Atoms:
    return Atoms('BaTiO3', cell=np.eye(3) * a, pbc=True,
                 scaled_positions=[[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])


@pytest.fixture
def labelled_frames():
    """Three rattled BaTiO3 cells with synthetic labels (for data-type tests that need no labeller)."""
    rng = np.random.default_rng(0)
    frames = []
    for i in range(3):
        atoms = cubic_batio3().repeat((1, 1, 2 if i == 2 else 1))
        atoms.rattle(0.05, seed=i)
        stress = rng.normal(size=6) * 1e-3
        atoms.calc = SinglePointCalculator(atoms, energy=-40.0 - i, forces=rng.normal(size=(len(atoms), 3)),
                                           stress=None if i == 1 else stress)
        frames.append(atoms)
    return frames
