"""``ferromlip setup``: register the plugin's codes on a computer of the current profile (idempotent).

``setup_profiles/embedded.py`` (``make setup``) and ``setup_profiles/production.py`` call the same function, so a
laptop profile, a production profile and a user's own cluster computer get the same codes.
"""

from __future__ import annotations

import pathlib
import shutil
import sys

import click

from aiida_ferromlip.cli import main, with_profile
from aiida_ferromlip.codes import CODES


def ensure_codes(computer_label: str = 'localhost', echo=print) -> None:
    """The plugin's codes on ``computer_label`` of the loaded profile (labels ``<code>@<computer>``), executables
    from this environment (else from PATH); existing codes are kept, a moved environment is reported."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    from aiida_ferromlip.workflows.dft.qe import PW_PREPEND_TEXT

    prepend = {'pw': PW_PREPEND_TEXT}  # lines run before the executable (see the constant for why)
    try:
        computer = orm.load_computer(computer_label)
    except NotExistent:
        raise ValueError(f'no computer `{computer_label}` in this profile: set it up first (`verdi computer setup`, '
                         f'`verdi computer configure`)') from None
    bindir = pathlib.Path(sys.executable).parent
    for name, (label, executable, plugin, _) in CODES.items():
        path = bindir / executable
        if not path.exists():
            found = shutil.which(executable)
            if found is None:
                echo(f'code {label}@{computer_label} not set up: `{executable}` is not installed')
                continue
            path = pathlib.Path(found)
        try:
            code = orm.load_code(f'{label}@{computer_label}')
        except NotExistent:
            code = orm.InstalledCode(computer=computer, filepath_executable=str(path), label=label,
                                     default_calc_job_plugin=plugin, prepend_text=prepend.get(name, ''),
                                     description=f'{executable} from {path.parent}').store()
            echo(f'code {label}@{computer_label} created (pk {code.pk}) -> {path}')
            continue
        if str(code.filepath_executable) != str(path):
            # Codes are immutable once stored: a moved checkout gets a clear message, not a silent mismatch.
            echo(f'WARNING: {label}@{computer_label} points to {code.filepath_executable}, this environment has {path}; '
                 f'remove the profile (rm -rf $AIIDA_PATH) and set it up again')
        else:
            echo(f'code {label}@{computer_label} exists (pk {code.pk})')


def ensure_unbound_mpirun(computer, echo=print) -> None:
    """``computer``'s ``mpirun`` without Open MPI's default binding (``--bind-to none``). Open MPI binds the ranks of
    each ``mpirun`` to cores counted from core 0, knowing nothing of the other jobs: two single-rank pw.x jobs side by
    side on one machine (the local computer, a SLURM node without cgroup cpusets) then share core 0 — measured on the
    2-core VM: both pw.x at 48 % of a core, ``taskset -p`` affinity ``0`` for each, while the other core idled. Unbound
    ranks are placed by the kernel. Launchers other than mpirun (``srun``) and commands that already say how to bind
    are left as they are."""
    command = list(computer.get_mpirun_command())
    if not command or pathlib.Path(command[0]).name != 'mpirun' or any(arg.startswith('--bind-to') for arg in command):
        return
    computer.set_mpirun_command([command[0], '--bind-to', 'none', *command[1:]])
    echo(f'computer `{computer.label}`: mpirun command {" ".join(computer.get_mpirun_command())}')


def ensure_pseudopotentials(echo=print) -> None:
    """The PBEsol pslibrary family of the loaded profile, generated with ld1.x (about 10 s the first time, nothing
    afterwards); a machine without ld1.x gets a message, not an error."""
    from aiida_ferromlip.pseudos import PseudoGenerationError, install_family

    try:
        family = install_family()
    except PseudoGenerationError as exception:
        echo(f'pseudopotential family not installed: {exception}')
        return
    echo(f'pseudopotential family `{family.label}`: {", ".join(sorted(family.elements))}')


@main.group()
def setup():
    """Register the plugin's codes in a profile."""


@setup.command('codes')
@click.option('--computer', default='localhost', show_default=True, help='The computer the codes run on.')
@with_profile
def codes(computer):
    """Register ferromlip-label, -gap, -md, -nequip, -task (and pw.x where installed) as codes on COMPUTER."""
    ensure_codes(computer, echo=click.echo)
