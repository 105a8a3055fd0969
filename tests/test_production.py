"""The production path on real services: a PostgreSQL + RabbitMQ profile whose CalcJobs go through a local SLURM
(setup_profiles/services.sh + production.py). The fast loop is submitted to the daemon, the daemon is SIGKILLed
while a job of the loop is in SLURM and started again; the loop must finish, every CalcJob must have been given
to SLURM exactly once (``sacct``), and nothing may be left unfinished.

Needs root (services.sh installs and starts the services); marked ``production``. `make test` runs it.
"""

import json
import os
import subprocess
import sys
import uuid

import pytest

pytestmark = [pytest.mark.production, pytest.mark.timeout(2400)]
HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(HERE)


@pytest.fixture(scope='module')
def services():
    if os.geteuid() != 0:
        pytest.fail('the production tests start system services: run them as root (they are meant for CI/VMs)')
    result = subprocess.run(['bash', os.path.join(ROOT, 'setup_profiles', 'services.sh')], capture_output=True,
                            text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture
def production_profile(services, tmp_path):
    """A fresh core.psql_dos + RabbitMQ profile with the SLURM computer, in its own AIIDA_PATH and database."""
    name = f'prod-test-{uuid.uuid4().hex[:8]}'
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', '')
    env = {**os.environ, 'AIIDA_PATH': str(tmp_path), 'OMP_NUM_THREADS': '1', 'PATH': path}
    setup = subprocess.run([sys.executable, os.path.join(ROOT, 'setup_profiles', 'production.py'), '--profile', name],
                           env=env, capture_output=True, text=True, timeout=600)
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    yield name, env
    subprocess.run([os.path.join(os.path.dirname(sys.executable), 'verdi'), '-p', name, 'daemon', 'stop'], env=env,
                   capture_output=True, timeout=300)
    subprocess.run(['runuser', '-u', 'postgres', '--', 'dropdb', '--if-exists', name.replace('-', '_')],
                   capture_output=True, timeout=120)


@pytest.mark.slow
def test_loop_through_slurm_survives_a_daemon_sigkill(production_profile):
    name, env = production_profile
    driver = subprocess.run([sys.executable, os.path.join(HERE, 'production_driver.py'), name, 'kill'], env=env,
                            capture_output=True, text=True, timeout=2300)
    assert driver.returncode == 0, driver.stdout[-3000:] + driver.stderr[-3000:]
    result = json.loads(driver.stdout.strip().splitlines()[-1])
    # the daemon (circus arbiter and its worker) was really killed while a job of the loop was in SLURM
    assert result['worker_pids'] and set(result['worker_pids']) <= set(result['killed_pids'])
    assert not result['survivors'] and result['in_flight_when_killed']
    # the loop finished as the fast protocol ends (two iterations), nothing is left running or waiting
    assert result['loops'] == [{'pk': result['loops'][0]['pk'], 'state': 'finished', 'exit_status': 501}]
    assert result['unterminated'] == []
    # every CalcJob went through SLURM exactly once and completed there; none failed
    jobs = result['calcjobs']
    assert len(jobs) >= 6  # 2 x (label, fit, sample) at least
    for job in jobs:
        assert job['exit_status'] == 0, job
        assert len(job['sacct']) == 1 and job['sacct'][0] == f'{job["job_id"]}:COMPLETED', job
    assert len({job['job_id'] for job in jobs}) == len(jobs)
