#!/usr/bin/env python
"""Create (idempotently) a production-style AiiDA profile: PostgreSQL storage (``core.psql_dos``), RabbitMQ broker,
and a SLURM computer with the plugin's codes.

Needs the services of ``setup_profiles/services.sh`` (or your own PostgreSQL/RabbitMQ/SLURM). The database is
created here with the C.UTF-8 locale — ``verdi presto --use-postgres`` asks for en_US.UTF-8, which a minimal Debian
does not have — owned by the role services.sh made. The computer is this machine seen through SLURM: scheduler
``core.slurm``, transport ``core.ssh_async`` to localhost (as a real cluster is reached; ``--transport local`` for
``core.local``), work directory under ``$AIIDA_PATH``. On a real cluster use the YAML templates in ``cluster/``.

Usage:  AIIDA_PATH=$PWD/.aiida python setup_profiles/production.py [--profile ferromlip-prod] [--transport ssh]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys


DB = {'host': 'localhost', 'port': 5432, 'user': os.environ.get('FERROMLIP_DB_USER', 'aiida'),
      'password': os.environ.get('FERROMLIP_DB_PASSWORD', 'aiida-ferromlip')}
COMPUTER = 'localhost-slurm'


def verdi(*args, check=True, **kwargs):
    return subprocess.run([str(pathlib.Path(sys.executable).parent / 'verdi'), *args], check=check, text=True,
                          **kwargs)


def ensure_database(name: str) -> None:
    import psycopg

    connection = psycopg.connect(host=DB['host'], port=DB['port'], user=DB['user'], password=DB['password'],
                                 dbname='postgres', autocommit=True)
    with connection:
        exists = connection.execute('SELECT 1 FROM pg_database WHERE datname = %s', (name,)).fetchone()
        if exists:
            print(f'database `{name}` exists')
            return
        connection.execute(f'CREATE DATABASE "{name}" OWNER "{DB["user"]}" ENCODING \'UTF8\' '
                           f"LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' TEMPLATE template0")
        print(f'database `{name}` created (C.UTF-8)')


def ensure_profile(name: str) -> None:
    from aiida.manage.configuration import get_config, reset_config

    if name in get_config(create=True).profile_names:
        print(f'profile `{name}` exists')
        return
    ensure_database(name.replace('-', '_'))
    repository = pathlib.Path(os.environ['AIIDA_PATH']) / f'repository-{name}'
    verdi('profile', 'setup', 'core.psql_dos', '-n', '--profile-name', name, '--no-set-as-default',
          '--email', 'ferromlip@localhost', '--first-name', 'ferromlip', '--last-name', 'production',
          '--institution', 'aiida-ferromlip', '--broker', 'core.rabbitmq',
          '--database-hostname', DB['host'], '--database-port', str(DB['port']), '--database-name',
          name.replace('-', '_'), '--database-username', DB['user'], '--database-password', DB['password'],
          '--repository-uri', repository.as_uri())
    reset_config()
    # aiida warns on RabbitMQ >= 3.8.15 unless its consumer timeout is off; services.sh turned it off, so check the
    # running server says so before silencing the warning for this profile
    timeout = subprocess.run(['rabbitmqctl', 'eval', 'application:get_env(rabbit, consumer_timeout).'],
                             capture_output=True, text=True)
    if timeout.returncode == 0 and timeout.stdout.strip() == '{ok,undefined}':
        verdi('-p', name, 'config', 'set', 'warnings.rabbitmq_version', 'False', stdout=subprocess.DEVNULL)
    else:
        print('RabbitMQ still has a consumer timeout: set `consumer_timeout` to undefined (see services.sh)',
              file=sys.stderr)
    # as for the embedded profile: the circus controller's 2 s default times out on a loaded 2-core machine
    verdi('-p', name, 'config', 'set', 'daemon.timeout', '30', stdout=subprocess.DEVNULL)
    print(f'profile `{name}` created: PostgreSQL + RabbitMQ, repository {repository}')


TRANSPORTS = {'ssh': 'core.ssh_async', 'local': 'core.local'}


def ensure_computer(profile: str, cpus: int, transport: str) -> None:
    from aiida import load_profile, orm
    from aiida.common.exceptions import NotExistent

    load_profile(profile, allow_switch=True)
    try:
        computer = orm.load_computer(COMPUTER)
        print(f'computer `{COMPUTER}` exists ({computer.transport_type})')
    except NotExistent:
        workdir = pathlib.Path(os.environ['AIIDA_PATH']) / 'scratch-slurm' / '{username}'
        computer = orm.Computer(label=COMPUTER, hostname='localhost', transport_type=TRANSPORTS[transport],
                                scheduler_type='core.slurm', workdir=str(workdir),
                                description='this machine through its SLURM (setup_profiles/services.sh)').store()
        computer.set_default_mpiprocs_per_machine(cpus)
        computer.set_mpirun_command(['mpirun', '-np', '{tot_num_mpiprocs}'])
        print(f'computer `{COMPUTER}` created ({TRANSPORTS[transport]} + core.slurm, {cpus} cores)')
    from aiida_ferromlip.cli.setup import ensure_unbound_mpirun

    ensure_unbound_mpirun(computer)  # SLURM here runs without cgroup cpusets (services.sh: TaskPlugin=task/none)
    user = orm.User.collection.get_default()
    if not computer.is_user_configured(user):
        # ssh_async connects like `ssh localhost` (key and known host set up by services.sh)
        # local: no login shell for each sbatch/squeue (setup_profiles/embedded.py says what `bash -l` costs here)
        settings = ({'host': 'localhost', 'safe_interval': 0.5} if transport == 'ssh'
                    else {'safe_interval': 0.5, 'use_login_shell': False})
        computer.configure(user, **settings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--profile', default='ferromlip-prod')
    parser.add_argument('--cpus', type=int, default=os.cpu_count())
    parser.add_argument('--transport', choices=sorted(TRANSPORTS), default='ssh')
    args = parser.parse_args()
    if 'AIIDA_PATH' not in os.environ:
        print('AIIDA_PATH is not set: refusing to touch the user-wide ~/.aiida', file=sys.stderr)
        return 2
    ensure_profile(args.profile)
    ensure_computer(args.profile, args.cpus, args.transport)
    from aiida import load_profile

    from aiida_ferromlip.cli.setup import ensure_codes, ensure_pseudopotentials  # the embedded profile's codes too

    load_profile(args.profile, allow_switch=True)
    ensure_codes(COMPUTER)
    ensure_pseudopotentials()
    verdi('-p', args.profile, 'computer', 'test', COMPUTER)
    verdi('-p', args.profile, 'status', check=False)
    return 0


if __name__ == '__main__':
    sys.exit(main())
