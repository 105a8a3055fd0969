#!/usr/bin/env python
"""Create (idempotently) the embedded AiiDA profile of aiida-ferromlip and register its codes (`ferromlip setup codes`).

Storage ``core.sqlite_dos`` + the ZeroMQ broker built into aiida-core 2.9: ``verdi run``, ``submit`` and the
daemon work with no PostgreSQL and no RabbitMQ. The profile lives in ``$AIIDA_PATH`` (the Makefile points it at
``<repo>/.aiida``). Running this script twice changes nothing.

Usage:  AIIDA_PATH=$PWD/.aiida python setup_profiles/embedded.py [--profile ferromlip]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys

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


def configure_localhost() -> None:
    """The profile's `localhost` without a login shell, and its mpirun without core binding (`ensure_unbound_mpirun`
    says why). `verdi presto` configures it with aiida's default
    (`use_login_shell=True`), so every command the engine runs there — each scheduler poll (every second), each job
    submission — starts `bash -l`, which reads the user's profile (here pyenv's init): measured on the 2-core VM with
    jobs running, 0.61-0.73 s per command against 0.05 s without (`LocalTransport.exec_command_wait('ps ...')`,
    docs/throughput.md). The plugin's codes are absolute paths and a job inherits the engine's environment either
    way, so nothing needs the login shell."""
    from aiida import orm

    from aiida_ferromlip.cli.setup import ensure_unbound_mpirun

    computer = orm.load_computer('localhost')
    user = orm.User.collection.get_default()
    params = computer.get_authinfo(user).get_auth_params() if computer.is_user_configured(user) else {}
    if params.get('use_login_shell', True):
        computer.configure(user, **{**params, 'use_login_shell': False})
        print('computer `localhost`: use_login_shell = False')
    ensure_unbound_mpirun(computer)  # two pw.x side by side would otherwise share core 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--profile', default='ferromlip')
    args = parser.parse_args()
    if 'AIIDA_PATH' not in os.environ:
        print('AIIDA_PATH is not set: refusing to touch the user-wide ~/.aiida (use `make setup`)', file=sys.stderr)
        return 2
    ensure_profile(args.profile)
    from aiida import load_profile

    from aiida_ferromlip.cli.setup import ensure_codes, ensure_pseudopotentials

    load_profile(args.profile, allow_switch=True)
    configure_localhost()
    ensure_codes('localhost')
    ensure_pseudopotentials()
    return 0


if __name__ == '__main__':
    sys.exit(main())
