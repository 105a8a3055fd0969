"""Where one loop's time goes, per stage: wall time, time a program ran, AiiDA's share, CPU utilisation.

    verdi run benchmarks/loop_profile.py [--protocol fast|batio3_gap] [--iterations 1] [--steps N] [--no-card]
    verdi run benchmarks/loop_profile.py --loop PK      # the profile of a finished loop (no CPU column)
    verdi run benchmarks/loop_profile.py --loop PK --gaps 1.0   # and each stretch of >= 1 s with no program running
    verdi run benchmarks/loop_profile.py --iterations 2 --stacks  # and what the engine did while no program ran

Runs the BaTiO3 active-learning loop of ``--protocol`` (the demo's when ``fast``: with the physics card) for
``--iterations`` iterations while sampling the machine's CPU use every 0.5 s, then prints
``workflows/loop/after_loop.loop_profile`` as a table: per stage (label, fit, sample, select, judge = out-of-sample errors
and the physics card, other = the start at the labeller's equilibrium), the wall time its processes were alive, the
time one of its programs ran (the engines' own start/end), the AiiDA share (alive with no program of the stage
running: process management, upload/retrieval, parsing, calcfunctions) and the mean CPU utilisation of all cores;
then each iteration's wall time (its first process's creation to its last one's end). With ``--stacks`` the engine's
thread is sampled every 50 ms (``analysis.profile.StackSampler``) and the time with no program running is split by
what the engine was doing then (a work chain's step and the calcfunction it ran, a parser, a job's upload, idle).
"""

import argparse
import time

from aiida import orm

from aiida_ferromlip.analysis.profile import CpuSampler, StackSampler, gaps, time_by_label
from aiida_ferromlip.codes import add_code_options, codes_from_arguments
from aiida_ferromlip.launch import run_get_node
from aiida_ferromlip.workflows.loop.active_learning import ActiveLearningWorkChain
from aiida_ferromlip.workflows.loop.after_loop import (
    format_iterations, format_profile, loop_gaps, loop_iterations, loop_profile, program_intervals,
)


def print_gaps(node, min_seconds: float) -> None:
    rows = loop_gaps(node, min_seconds)
    print(f'\n{len(rows)} stretch(es) of >= {min_seconds:g} s with no program running, '
          f'{sum(row["length_s"] for row in rows):.0f} s in all:')
    for row in rows:
        print(f'{row["start_s"]:8.1f} s  +{row["length_s"]:5.1f} s  alive: {", ".join(row["alive"])}')
        print(f'{"":20}created: {", ".join(row["created"])}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--protocol', default='fast')
    parser.add_argument('--iterations', type=int, default=1)
    parser.add_argument('--steps', type=int, default=None, help='MD steps per sampling run (protocol default)')
    parser.add_argument('--no-card', action='store_true', help='without the physics card')
    parser.add_argument('--loop', type=int, default=None, help='profile this finished loop instead of running one')
    parser.add_argument('--gaps', type=float, default=None, metavar='SECONDS',
                        help='also list every stretch this long or longer with no program running, and what ran')
    parser.add_argument('--stacks', action='store_true',
                        help='sample the engine\'s thread and split the time with no program running by what it did')
    add_code_options(parser, 'label', 'gap', 'md', 'task')
    args = parser.parse_args()
    if args.stacks and args.loop:
        parser.error('--stacks samples a loop while it runs: not with --loop')
    codes = codes_from_arguments(parser, args, 'label', 'gap', 'md', 'task')
    if args.loop:
        node = orm.load_node(args.loop)
        print(f'{node.process_label}<{node.pk}> [{node.exit_status}]')
        print(format_profile(loop_profile(node)))
        print(format_iterations(loop_iterations(node)))
        if args.gaps is not None:
            print_gaps(node, args.gaps)
        return
    overrides = {'parameters': {'max_iterations': args.iterations}}
    if args.steps:
        overrides['sample'] = {'overrides': {'parameters': {'steps': args.steps}}}
    builder = ActiveLearningWorkChain.get_builder_from_protocol(
        codes['label'], codes['gap'], codes['md'], material='BaTiO3', protocol=args.protocol, overrides=overrides,
        task_code=None if args.no_card else codes['task'])
    start = time.perf_counter()
    stacks = StackSampler() if args.stacks else None
    with CpuSampler() as sampler:
        if stacks:
            with stacks:
                _, node = run_get_node(builder)
        else:
            _, node = run_get_node(builder)
    wall = time.perf_counter() - start
    print(f'ActiveLearningWorkChain<{node.pk}> ({args.protocol}, {args.iterations} iteration(s), card '
          f'{"off" if args.no_card else "on"}): exit {node.exit_status}; {wall:.0f} s from launch to end')
    print(format_profile(loop_profile(node, sampler.samples)))
    print(format_iterations(loop_iterations(node)))
    if args.gaps is not None:
        print_gaps(node, args.gaps)
    if stacks:
        idle = gaps(program_intervals(node), (node.ctime.timestamp(), node.mtime.timestamp()))
        rows = time_by_label(stacks.samples, idle, stacks.interval)
        print(f'\nWhat the engine\'s thread did while no program ran ({sum(t for _, t in rows):.0f} s sampled):')
        for label, seconds in rows[:25]:
            print(f'{seconds:7.1f} s  {label}')


if __name__ == '__main__':
    main()
