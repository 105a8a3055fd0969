"""Shared fixtures: aiida-core's temporary profile, the reference labeller's code, small BaTiO3 frames."""

import pathlib
import shutil
import sys

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

pytest_plugins = ['aiida.tools.pytest_fixtures']


@pytest.fixture(autouse=True)
def idle_polling(monkeypatch):
    """Without a broker (the test profile), a work chain learns that a sub-process finished by polling its node, and
    aiida-core polls test profiles with no pause at all: with a few dozen pw.x sub-processes waiting, that loop took
    a whole core of a 2-core machine from the calculations (py-spy: ``Runner._poll_process``). Every runner made in
    a test polls every 0.5 s instead: a finished process is noticed at most that much later."""
    from aiida.manage.manager import Manager

    create_runner = Manager.create_runner

    def patient(self, *args, **kwargs):
        kwargs.setdefault('poll_interval', 0.5)
        return create_runner(self, *args, **kwargs)

    monkeypatch.setattr(Manager, 'create_runner', patient)


@pytest.fixture
def aiida_localhost(aiida_computer_local):
    """aiida-core's test localhost, configured without a login shell (as `setup_profiles/embedded.py` configures the
    profile's): with `bash -l` every scheduler poll read the user's shell profile, 0.6-0.7 s a command on this VM."""
    from aiida import orm

    computer = aiida_computer_local(label='localhost', configure=False)
    user = orm.User.collection.get_default()
    if not computer.is_user_configured(user):
        computer.configure(user, use_login_shell=False, safe_interval=0)
    return computer


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


@pytest.fixture(scope='session')
def sevennet():
    from aiida_ferromlip.engines.reference import make_calculator

    return make_calculator('7net-0')


@pytest.fixture(scope='session')
def reference_frames(sevennet):
    """16 SevenNet-0-labelled 40-atom BaTiO3 frames: 4 rattled/strained copies of each phase."""
    from aiida_ferromlip.engines.reference import label_frames
    from aiida_ferromlip.materials import batio3_polymorphs, rattled_strained

    frames = []
    for index, atoms in enumerate(batio3_polymorphs().values()):
        frames += rattled_strained(atoms, 4, rattle=0.06, seed=index)
    labelled, failures, _ = label_frames(frames, sevennet)
    assert not failures
    return labelled


def fit_gap_directly(frames, directory):
    """The `fast`-preset GAP of labelled BaTiO3 ``frames``, fitted by gap_fit in ``directory`` (no AiiDA): its XML."""
    import subprocess

    from ase.io import write

    from aiida_ferromlip.calculations.gap_fit import GapFitCalculation, gap_fit_frames
    from aiida_ferromlip.data.training_set import TrainingSet
    from aiida_ferromlip.engines import gap as engine

    write(directory / 'train.extxyz', gap_fit_frames(TrainingSet(frames=frames), range(len(frames))), format='extxyz')
    parameters = GapFitCalculation.get_protocol_inputs('fast')['parameters']
    command = engine.gap_fit_command(parameters, [56, 22, 8], 'train.extxyz')
    subprocess.run(command, cwd=directory, check=True, capture_output=True)
    return directory / engine.POTENTIAL_FILE


def stored_gap(xml):
    """A stored GapPotential node of a BaTiO3 GAP fitted by ``fit_gap_directly``."""
    from aiida_ferromlip.data.potential import GapPotential

    potential = GapPotential(str(xml))
    potential.base.attributes.set_many({'species': ['Ba', 'O', 'Ti'], 'gives_stress': True, 'cutoff': 3.8})
    return potential.store()


@pytest.fixture(scope='session')
def fitted_gap_xml(reference_frames, tmp_path_factory):
    """A `fast`-preset GAP fitted by gap_fit directly (no AiiDA), for tests of the stages after fitting."""
    return fit_gap_directly(reference_frames, tmp_path_factory.mktemp('gap'))


@pytest.fixture
def gap_potential(fitted_gap_xml):
    return stored_gap(fitted_gap_xml)


@pytest.fixture
def task_code(aiida_code_installed):
    """The ASE-task program (relaxations and single points with any potential) as a code."""
    return aiida_code_installed(label='ferromlip-task', default_calc_job_plugin='ferromlip.atoms_task',
                                filepath_executable=executable('ferromlip-task'))
