#!/usr/bin/env python
"""Create (idempotently) the embedded AiiDA profile of aiida-ferromlip and register its codes.

Storage ``core.sqlite_dos`` + the ZeroMQ broker built into aiida-core 2.9: ``verdi run``, ``submit`` and the
daemon work with no PostgreSQL and no RabbitMQ. The profile lives in ``$AIIDA_PATH`` (the Makefile points it at
``<repo>/.aiida``). Running this script twice changes nothing.

Usage:  AIIDA_PATH=$PWD/.aiida python setup_profiles/embedded.py [--profile ferromlip]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys

#: label -> (executable name in this environment's bin/ or on PATH, default CalcJob plugin).
CODES = {
    'ferromlip-label': ('ferromlip-label', 'ferromlip.reference_label'),
    'ferromlip-gap': ('ferromlip-gap', 'ferromlip.gap_fit'),
    'ferromlip-md': ('ferromlip-md', 'ferromlip.sample'),
    'ferromlip-nequip': ('ferromlip-nequip', 'ferromlip.nequip_train'),
    'ferromlip-task': ('ferromlip-task', 'ferromlip.atoms_task'),
    'pw': ('pw.x', 'quantumespresso.pw'),
}


def ensure_profile(name: str) -> None:
    from aiida.manage.configuration import get_config

    config = get_config(create=True)
    if name in config.profile_names:
        print(f'profile `{name}` exists in {config.dirpath}')
    else:
        verdi = pathlib.Path(sys.executable).parent / 'verdi'
        subprocess.run([str(verdi), 'presto', '-p', name, '--use-zeromq', '--email', 'ferromlip@localhost', '-n'],
                       check=True)
        print(f'profile `{name}` created in {config.dirpath}')
        from aiida.manage.configuration import reset_config

        reset_config()  # `verdi presto` wrote the config in another process: drop the cached copy
    verdi = str(pathlib.Path(sys.executable).parent / 'verdi')
    subprocess.run([verdi, 'profile', 'set-default', name], check=True, stdout=subprocess.DEVNULL)
    # aiida's 2 s default for talking to the daemon's circus controller times out on a loaded 2-core laptop
    # (measured here while gap_fit and MD jobs ran): `verdi daemon stop` then fails although nothing is wrong.
    subprocess.run([verdi, '-p', name, 'config', 'set', 'daemon.timeout', '30'], check=True, stdout=subprocess.DEVNULL)


def ensure_codes(profile: str, computer_label: str = 'localhost') -> None:
    """The plugin's codes on ``computer_label`` (labels ``<code>@<computer>``), executables from this venv."""
    from aiida import load_profile, orm
    from aiida.common.exceptions import NotExistent

    from aiida_ferromlip.workflows.qe_label import PW_PREPEND_TEXT

    prepend = {'pw': PW_PREPEND_TEXT}  # lines run before the executable (see the constant for why)
    load_profile(profile, allow_switch=True)
    computer = orm.load_computer(computer_label)
    bindir = pathlib.Path(sys.executable).parent
    for label, (executable, plugin) in CODES.items():
        path = bindir / executable
        if not path.exists():
            found = shutil.which(executable)
            if found is None:
                print(f'code {label}@{computer_label} not set up: `{executable}` is not installed', file=sys.stderr)
                continue
            path = pathlib.Path(found)
        try:
            code = orm.load_code(f'{label}@{computer_label}')
        except NotExistent:
            code = orm.InstalledCode(computer=computer, filepath_executable=str(path), label=label,
                                     default_calc_job_plugin=plugin, prepend_text=prepend.get(label, ''),
                                     description=f'{executable} from {path.parent}').store()
            print(f'code {label}@{computer_label} created (pk {code.pk}) -> {path}')
            continue
        if str(code.filepath_executable) != str(path):
            # Codes are immutable once stored: a moved checkout gets a clear message, not a silent mismatch.
            print(f'WARNING: {label}@{computer_label} points to {code.filepath_executable}, this environment has {path}; '
                  f'remove the profile (rm -rf $AIIDA_PATH) and run this script again', file=sys.stderr)
        else:
            print(f'code {label}@{computer_label} exists (pk {code.pk})')


def ensure_pseudopotentials(profile: str) -> None:
    """The PBEsol pslibrary family, generated with ld1.x (about 10 s the first time, nothing afterwards)."""
    from aiida import load_profile

    from aiida_ferromlip.pseudos import PseudoGenerationError, install_family

    load_profile(profile, allow_switch=True)
    try:
        family = install_family()
    except PseudoGenerationError as exception:
        print(f'pseudopotential family not installed: {exception}', file=sys.stderr)
        return
    print(f'pseudopotential family `{family.label}`: {", ".join(sorted(family.elements))}')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--profile', default='ferromlip')
    args = parser.parse_args()
    if 'AIIDA_PATH' not in os.environ:
        print('AIIDA_PATH is not set: refusing to touch the user-wide ~/.aiida (use `make setup`)', file=sys.stderr)
        return 2
    ensure_profile(args.profile)
    ensure_codes(args.profile)
    ensure_pseudopotentials(args.profile)
    return 0


if __name__ == '__main__':
    sys.exit(main())
