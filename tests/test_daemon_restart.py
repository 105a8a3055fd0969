"""The loop survives a daemon stop/start (ZeroMQ broker, no RabbitMQ) and labels no structure twice."""

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_loop_continues_after_daemon_restart(tmp_path):
    here = os.path.dirname(__file__)
    # The daemon starts `verdi` from PATH: put this environment's bin/ first, as an activated venv would.
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', '')
    env = {**os.environ, 'AIIDA_PATH': str(tmp_path), 'OMP_NUM_THREADS': '1', 'PATH': path}
    setup = subprocess.run([sys.executable, os.path.join(here, '..', 'setup_profiles', 'embedded.py'),
                            '--profile', 'restart'], env=env, capture_output=True, text=True)
    assert setup.returncode == 0, setup.stderr
    driver = subprocess.run([sys.executable, os.path.join(here, 'daemon_restart_driver.py'), 'restart'], env=env,
                            capture_output=True, text=True, timeout=1700)
    assert driver.returncode == 0, driver.stdout[-3000:] + driver.stderr[-3000:]
    result = json.loads(driver.stdout.strip().splitlines()[-1])
    assert result['state_when_stopped'] in ('waiting', 'running', 'created')
    assert result['exit_status'] == 501 and result['stop_reason'] == 'the maximum of 2 iterations was reached'
    assert result['training_frames'] == 3 + 3 + 3
    assert result['labelled'] == result['distinct_labelled'] == 9
