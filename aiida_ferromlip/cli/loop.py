"""``ferromlip loop show | continue``: what an active-learning loop did, and a continuation with a new budget."""

from __future__ import annotations

import json
import pathlib

import click

from aiida_ferromlip.cli import main, with_profile
from aiida_ferromlip.exit_codes import EXIT_CODES


@main.group()
def loop():
    """Inspect and continue ActiveLearningWorkChain runs."""


def _fmt(value, spec: str, width: int) -> str:
    return f'{value:{width}{spec}}' if isinstance(value, (int, float)) else f'{"-":>{width}s}'


def format_overview(overview: dict) -> str:
    """The overview as the table ``loop show`` prints."""
    state = overview['process_state']
    status = f'{state} [{overview["exit_status"]}]' if overview['exit_status'] is not None else state
    thresholds = overview['thresholds']
    lines = [f'ActiveLearningWorkChain<{overview["pk"]}>  {status}  labeller: {overview["labeller"]}, model: '
             f'{overview["model"]}',
             f'thresholds: energy {thresholds["energy_meV_per_fu"]:g} meV/f.u., forces {thresholds["forces_meV_per_A"]:g}'
             f' meV/Å; budget: {overview["max_iterations"]} iterations, {overview["max_labels"]} labels '
             f'(batches of {overview["batch"]}); seed labels: {overview["seed_labels"]}']
    if overview.get('initial_training_set'):
        lines.append(f'continues from TrainingSet<{overview["initial_training_set"]}>'
                     + (f' (loop {overview["continues"]})' if overview.get('continues') else ''))
    lines += ['', ' it  train  sampled  rejected  selected  labels   E oos   F oos  E test  F test   card   note',
              '                                                  meV/fu   meV/Å  meV/fu   meV/Å']
    for row in overview['iterations']:
        card = f'{row["card_items_passed"]}/{row["card_items"]}' if 'card_items' in row else '-'
        note = []
        if row.get('final'):
            note.append('final potential')
        elif row.get('potential') is not None and row.get('potential') == overview['outputs'].get('potential'):
            note.append('the output potential')  # converged on its card and its own batch: not refitted
        if row.get('below_thresholds'):
            note.append('below thresholds')
        if row.get('card_labels'):
            note.append(f'{row["card_labels"]} card frames')
        if row.get('card_failed'):
            note.append('card failing: ' + ', '.join(row['card_failed']))
        lines.append(f'{row["iteration"]:3d}  {_fmt(row.get("training_frames"), "d", 5)}  '
                     f'{_fmt(row.get("sampled"), "d", 7)}  {_fmt(row.get("rejected"), "d", 8)}  '
                     f'{_fmt(row.get("selected"), "d", 8)}  {_fmt(row.get("labels"), "d", 6)}  '
                     f'{_fmt(row.get("energy_per_fu_meV_rmse"), ".2f", 6)}  {_fmt(row.get("forces_meV_per_A_rmse"), ".0f", 6)}  '
                     f'{_fmt(row.get("test_energy_per_fu_meV_rmse"), ".2f", 6)}  '
                     f'{_fmt(row.get("test_forces_meV_per_A_rmse"), ".0f", 6)}  {card:>5s}   {"; ".join(note)}')
    lines.append('')
    lines.append('E/F oos: the potential of that iteration on the batch selected from its own MD, before the batch '
                 'joined the training set;')
    lines.append('E/F test: on the independent test set of the physics card (never offered to selection).')
    lines.append('')
    if overview['stop_reason']:
        lines.append(f'stop reason: {overview["stop_reason"]}')
    elif overview['exit_message']:
        lines.append(f'ended: {overview["exit_message"]}')
    else:
        lines.append(f'not finished ({state}); `verdi process report {overview["pk"]}` follows it')
    outputs = overview['outputs']
    if 'potential' in outputs:
        lines.append(f'final potential: {outputs["potential"]}; TrainingSet: {outputs["training_set"]} '
                     f'({overview.get("training_frames")} frames, {overview.get("num_labels")} labels made by this '
                     f'loop)')
        if 'potential_training_set' in overview:
            fitted = overview['potential_training_set']
            lines.append(f'  the potential is fitted on TrainingSet {fitted["pk"]} ({fitted["frames"]} frames): the '
                         f'one whose card and out-of-sample errors passed; the last batch measured those errors')
    if 'test_set' in outputs:
        lines.append(f'independent test set: TrainingSet {outputs["test_set"]}')
    if 'card' in overview:
        card = overview['card']
        lines.append(f'physics card of the final potential: {card["num_passed"]}/{card["num_items"]} items pass'
                     + (' (green)' if card['passed'] else ''))
        lines += [f'  failing: {item}' for item in card['failing']]
    for name, item in overview['plots'].items():
        lines.append(f'{name}: SinglefileData {item["pk"]} ({item["filename"]}; `verdi node repo cat {item["pk"]} '
                     f'{item["filename"]} > {item["filename"]}`, or `--plots DIR`)')
    lines.append(f'lab notebook: verdi process report {overview["pk"]}')
    return '\n'.join(lines)


@loop.command('show')
@click.argument('identifier')
@click.option('--json', 'as_json', is_flag=True, help='Print the overview as JSON (for scripts).')
@click.option('--plots', type=click.Path(file_okay=False, path_type=pathlib.Path), default=None,
              help='Also write the learning curve and the card (PNG, Markdown) into this directory.')
@with_profile
def show(identifier, as_json, plots):
    """Per iteration: frames sampled/rejected/selected, labels, out-of-sample and independent-test-set errors,
    card items passed; the stop reason, the final potential and TrainingSet, where the plots are."""
    from aiida_ferromlip.workflows.loop.after_loop import load_loop, loop_overview, write_plots

    overview = loop_overview(load_loop(identifier))
    if as_json:
        click.echo(json.dumps(overview, indent=2, default=str))
    else:
        click.echo(format_overview(overview))
    if plots is not None:
        for path in write_plots(overview, plots):
            click.echo(f'wrote {path}', err=as_json)


@loop.command('continue')
@click.argument('identifier')
@click.option('--max-labels', type=int, required=True,
              help='Total label budget, the frames already in the TrainingSet included.')
@click.option('--max-iterations', type=int, default=None,
              help="Iterations of the new loop (default: the first loop's).")
@click.option('-d', '--daemon', is_flag=True, help='Submit to the daemon instead of running here.')
@with_profile
def continue_(identifier, max_labels, max_iterations, daemon):
    """A new loop from a finished loop's TrainingSet and potential, with its inputs and a new budget."""
    from aiida.engine import submit

    from aiida_ferromlip.launch import run_get_node
    from aiida_ferromlip.workflows.loop.after_loop import continuation_builder, load_loop, loop_overview

    first = load_loop(identifier)
    builder = continuation_builder(first, max_labels, max_iterations)
    if daemon:
        node = submit(builder)
        node.base.extras.set('continues', first.uuid)
        click.echo(f'submitted ActiveLearningWorkChain<{node.pk}>, continuing <{first.pk}>; '
                   f'`ferromlip loop show {node.pk}` follows it')
        return
    _, node = run_get_node(builder)
    node.base.extras.set('continues', first.uuid)
    click.echo(format_overview(loop_overview(node)))
    if not node.is_finished_ok and node.exit_status != EXIT_CODES['STOPPED_BUDGET_EXHAUSTED'][0]:
        raise SystemExit(1)

