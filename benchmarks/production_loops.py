"""Many fast active-learning loops submitted at once to the daemon of a PostgreSQL + RabbitMQ profile, their jobs
through SLURM (docs/production.md). Prints the wall time, the daemon's worker count, and how every loop and
CalcJob ended, with what `sacct` recorded for each job.

    AIIDA_PATH=$PWD/.aiida python benchmarks/production_loops.py [--profile ferromlip-prod] [--loops 20] [--workers 2]

Needs `make production` (services + profile). Uses tests/production_driver.py (the same driver as the SIGKILL test).
"""

import argparse
import collections
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--profile', default='ferromlip-prod')
    parser.add_argument('--loops', type=int, default=20)
    parser.add_argument('--workers', type=int, default=2)
    args = parser.parse_args()
    env = {**os.environ, 'FERROMLIP_DAEMON_WORKERS': str(args.workers), 'OMP_NUM_THREADS': '1',
           'PATH': os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', '')}
    driver = subprocess.run([sys.executable, os.path.join(HERE, '..', 'tests', 'production_driver.py'), args.profile,
                             'loops', str(args.loops)], env=env, capture_output=True, text=True)
    if driver.returncode != 0:
        sys.exit(f'the driver failed:\n{driver.stdout[-2000:]}\n{driver.stderr[-3000:]}')
    report(json.loads(driver.stdout.strip().splitlines()[-1]))


def report(result: dict) -> None:
    loops = collections.Counter(f'{loop["state"]} [{loop["exit_status"]}]' for loop in result['loops'])
    jobs = result['calcjobs']
    sacct = collections.Counter(';'.join(state.split(':')[1] for state in job['sacct']) or 'none' for job in jobs)
    twice = [job['pk'] for job in jobs if len(job['sacct']) != 1]
    print(f'{len(result["loops"])} loops, daemon workers {result["workers"]}, wall time {result["wall_time_s"]:.0f} s')
    print(f'loops: {dict(loops)}; unterminated processes: {len(result["unterminated"])}')
    print(f'CalcJobs: {len(jobs)}, exit 0: {sum(job["exit_status"] == 0 for job in jobs)}; sacct states: '
          f'{dict(sacct)}; jobs with other than one SLURM allocation: {twice or "none"}')


if __name__ == '__main__':
    main()
