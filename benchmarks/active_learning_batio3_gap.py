"""Benchmark of the loop's performance target (issue: batio3_gap protocol on BaTiO3 with the reference labeller).

    verdi run benchmarks/active_learning_batio3_gap.py [--protocol batio3_gap] [--max-iterations 10] [--steps N]
                                                       [--card] [--continue-from PK --max-labels N]
                                                       [--explorer GAP_PROTOCOL]

Target: out-of-sample errors <= 5 meV/f.u. and <= 100 meV/Å on REMD frames (50-300 K) with at most 150 labels.
Prints the labels used, the errors per iteration, the wall time, and the share of the wall time during which no
job's program was running (AiiDA bookkeeping: process management, storage, job upload/retrieval, parsing,
calcfunctions such as selection and error evaluation).

With ``--card`` every potential is also judged by the protocol's physics card (the `batio3_gap` card: test-set MD at
the paper's 50/150/300 K, 1000 steps) and the loop converges only on a green card: the run then measures the labels
needed to a green card (physics-card issue, item 5); the card of the final potential is printed.

``--continue-from PK`` starts from what an earlier run of this benchmark left (``ferromlip loop continue``'s
builder: its TrainingSet, the labeller's side of the card and its test set), but refits with the GAP preset the
protocol holds *now* (the earlier run's potential is not reused when the preset changed since), with
``--max-labels`` as the total budget. It samples with the earlier run's MD settings (its ``--steps`` too) unless
``--steps`` is given again.

``--explorer GAP_PROTOCOL`` samples with a cheaper GAP of that gap.yaml protocol, fitted on the same frames before
the loop's own (the loop's ``fit.explorer``; the card and the errors judge the loop's own GAP). The `batio3_gap`
protocol's own explorer is ``balanced`` (the throughput issue's 2000-step REMD iteration in under an hour);
``--explorer none`` samples with the loop's own GAP.
"""

import argparse
import time

from aiida import orm

from aiida_ferromlip.analysis.profile import covered
from aiida_ferromlip.codes import add_code_options, codes_from_arguments
from aiida_ferromlip.launch import run_get_node
from aiida_ferromlip.workflows.loop.active_learning import ActiveLearningWorkChain
from aiida_ferromlip.workflows.loop.after_loop import (
    continuation_builder, format_iterations, loop_iterations, program_intervals,
)


def continued_with_current_preset(first, fresh, max_labels: int, max_iterations: int | None, refit: bool = False):
    """``ferromlip loop continue``'s builder for ``first``, with the fit parameters of ``fresh`` (the protocol as it
    is now); the earlier potential is dropped when its fit parameters differ or ``refit`` is asked (the new loop then
    fits first)."""
    builder = continuation_builder(first, max_labels, max_iterations)
    if 'explorer' in fresh.fit:
        builder.fit.explorer = fresh.fit.explorer
    elif 'explorer' in builder.fit:  # the earlier loop's explorer, not asked for now
        del builder.fit['explorer']
    if refit:
        builder.pop('initial_potential', None)
        print(f'continuing ActiveLearningWorkChain<{first.pk}>: its first iteration refits')
    old, new = builder.fit.gap.parameters.get_dict(), fresh.fit.gap.parameters.get_dict()
    if old != new:
        builder.fit.gap.parameters = orm.Dict(new)
        builder.pop('initial_potential', None)
        changed = sorted(key for key in {*old, *new} if old.get(key) != new.get(key))
        print(f'continuing ActiveLearningWorkChain<{first.pk}> with the current fit preset (changed: {", ".join(changed)})')
    return builder


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--protocol', default='batio3_gap')
    parser.add_argument('--max-iterations', type=int, default=None)
    parser.add_argument('--steps', type=int, default=None, help='MD steps per sampling run (protocol default)')
    parser.add_argument('--card', action='store_true', help='judge every potential with the physics card')
    parser.add_argument('--continue-from', type=int, default=None, help='an earlier loop of this benchmark to go on from')
    parser.add_argument('--max-labels', type=int, default=None, help='with --continue-from: the total label budget')
    parser.add_argument('--explorer', default=None, metavar='GAP_PROTOCOL',
                        help='sample with a cheaper GAP of this gap.yaml protocol (the loop\'s fit.explorer; the '
                             'protocol\'s own when not given), or `none`: with the loop\'s own GAP')
    parser.add_argument('--refit', action='store_true',
                        help='with --continue-from: the first iteration fits (and fits the explorer) as later ones do')
    add_code_options(parser, 'label', 'gap', 'md', 'task')
    args = parser.parse_args()
    if args.refit and args.continue_from is None:
        parser.error('--refit goes with --continue-from (a new loop fits first anyway)')
    codes = codes_from_arguments(parser, args, 'label', 'gap', 'md', 'task')
    overrides = {}
    if args.max_iterations:
        overrides['parameters'] = {'max_iterations': args.max_iterations}
    if args.steps:
        overrides['sample'] = {'overrides': {'parameters': {'steps': args.steps}}}
    if args.explorer:
        overrides['fit'] = {'explorer': None if args.explorer == 'none' else {'protocol': args.explorer}}
    builder = ActiveLearningWorkChain.get_builder_from_protocol(
        codes['label'], codes['gap'], codes['md'], material='BaTiO3', protocol=args.protocol, overrides=overrides,
        task_code=codes['task'] if args.card else None)
    if args.continue_from is not None:
        if args.max_labels is None:
            parser.error('--continue-from needs --max-labels (the total budget, the labels already made included)')
        builder = continued_with_current_preset(orm.load_node(args.continue_from), builder, args.max_labels,
                                                args.max_iterations, args.refit)
        if args.steps:  # the continued loop samples as the earlier one did, unless told otherwise
            builder.sample.parameters = orm.Dict({**builder.sample.parameters.get_dict(), 'steps': args.steps})
    print(f'sampling: {builder.sample.parameters["steps"]} MD steps per replica')
    start = time.perf_counter()
    results, node = run_get_node(builder)
    wall = time.perf_counter() - start
    summary = results['summary'].get_dict()
    print(f'ActiveLearningWorkChain<{node.pk}> ({args.protocol}): exit {node.exit_status}, {summary["stop_reason"]}')
    print('iteration  training frames  E RMSE meV/f.u.  F RMSE meV/Å  stress RMSE kbar  card')
    for row in summary['iterations']:
        card = f'{row["card_items_passed"]}/{row["card_items"]}' if 'card_items' in row else '-'
        print(f'{row["iteration"]:9d}  {row.get("training_frames", 0):15d}  {row.get("energy_per_fu_meV_rmse", float("nan")):15.2f}'
              f'  {row.get("forces_meV_per_A_rmse", float("nan")):12.0f}  {row.get("stress_kbar_rmse", float("nan")):16.2f}'
              f'  {card}' + (f'  failing: {", ".join(row["card_failed"])}' if row.get('card_failed') else ''))
    if 'card' in results:
        print(f'\nPhysics card of the final potential ({results["potential"].__class__.__name__}'
              f'<{results["potential"].pk}>):\n')
        print(results['card']['markdown'])
    programs = covered(program_intervals(node))
    print(f'labels used: {summary["num_labels"]}; wall time {wall:.0f} s; some program running {programs:.0f} s; '
          f'AiiDA bookkeeping share (no program running) {max(0.0, 1 - programs / wall):.0%}')
    print(format_iterations(loop_iterations(node)))


if __name__ == '__main__':
    main()
