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
    ensure_codes('localhost')
    ensure_pseudopotentials()
    return 0


if __name__ == '__main__':
    sys.exit(main())
