"""How long the plugin's jobs wait on either side of their programs: per CalcJob class, the median time from the
job's creation to its program's start and from the program's end (its engine's ``finished_at``) to the moment the
engine's scheduler poll saw the job done, and to the job's end (retrieved and parsed).

    verdi run benchmarks/job_latency.py [--since PK] [--until PK]

Every finished CalcJob of the plugin with an engine report between the two pks (default: all). The program's start
is read from ``/proc`` in whole clock ticks after a boot time in whole seconds, so the first column is good to about a
second; the second and third use the engines' ``time.time()`` and the node's own timestamps.
"""

import argparse
from collections import defaultdict

import numpy as np
from aiida import orm

from aiida_ferromlip.workflows.loop.after_loop import program_intervals


def latencies(since: int, until: int) -> dict[str, np.ndarray]:
    rows = defaultdict(list)
    query = orm.QueryBuilder().append(orm.CalcJobNode, filters={'id': {'and': [{'>': since}, {'<': until}]}},
                                      project='*')
    for (job,) in query.iterall():
        intervals = program_intervals(job)
        checked = job.get_scheduler_lastchecktime()
        if len(intervals) != 1 or not job.is_finished_ok or checked is None:
            continue
        (started, finished), = intervals
        rows[job.process_label].append((started - job.ctime.timestamp(), checked.timestamp() - finished,
                                        job.mtime.timestamp() - finished))
    return {label: np.array(values) for label, values in rows.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--since', type=int, default=0, help='jobs with a larger pk')
    parser.add_argument('--until', type=int, default=10**12, help='jobs with a smaller pk')
    args = parser.parse_args()
    print('| job | jobs | created -> program start (s) | program end -> seen done (s) | program end -> job end (s) |')
    print('|---|---|---|---|---|')
    for label, values in sorted(latencies(args.since, args.until).items()):
        medians = np.median(values, axis=0)
        print(f'| {label} | {len(values)} | {medians[0]:.2f} | {medians[1]:.2f} | {medians[2]:.2f} |')


if __name__ == '__main__':
    main()
