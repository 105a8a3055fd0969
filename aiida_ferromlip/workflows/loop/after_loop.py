"""After the loop: what a finished (or running) active-learning loop did, its potential taken out of AiiDA, and a
continuation with a larger budget. The ``ferromlip loop`` / ``ferromlip potential`` commands are thin wrappers
around these functions, which scripts can call too.

Everything here reads the provenance graph; nothing is recomputed. A loop's per-iteration rows are rebuilt from the
processes it called (``fit_NNN``, ``card_NNN``, ``select_NNN``, ``label_NNN``, ``errors_NNN``), so a running or
failed loop is shown as far as it got, not only a finished one's ``summary``.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import tempfile

from aiida import orm
from aiida.common.links import LinkType

from aiida_ferromlip.data.potential import POTENTIAL_TYPES, GapPotential, NequipPotential
from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.analysis.physics_card import _fmt
from aiida_ferromlip.workflows.fit.models import MODELS
from aiida_ferromlip.workflows.loop.active_learning import (
    ActiveLearningWorkChain,
    _row_value,
    card_test_set,
    loop_parameters,
    loop_stages,
    start_structures,
)
from aiida_ferromlip.workflows.select.candidates import merged_options

_STAGE = re.compile(r'^(fit|card|select|errors|label)_(\d{3})(_card)?$')


class AfterLoopError(ValueError):
    """A request the after-the-loop tools refuse (wrong node, budget, existing directory): one line for the user."""


# ------------------------------------------------------------------------------------------------- loading
def load_typed(identifier, expected: type | tuple, what: str):
    """The node with pk or uuid ``identifier``, checked to be ``expected``; ``AfterLoopError`` names the problem."""
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    try:
        node = orm.load_node(identifier)
    except NotExistent:
        raise AfterLoopError(f'no node with pk or uuid `{identifier}`') from None
    except MultipleObjectsError:
        raise AfterLoopError(f'`{identifier}` matches several nodes: give the full uuid or the pk') from None
    if not isinstance(node, expected):
        kind = node.process_label if isinstance(node, orm.ProcessNode) else type(node).__name__
        raise AfterLoopError(f'node {node.pk} is a {kind}, not {what}')
    return node


def load_loop(identifier) -> orm.WorkflowNode:
    node = load_typed(identifier, orm.WorkflowNode, 'an ActiveLearningWorkChain')
    if node.process_class is not ActiveLearningWorkChain:
        raise AfterLoopError(f'node {node.pk} is a {node.process_label}, not an ActiveLearningWorkChain')
    return node


# ------------------------------------------------------------------------------------------------ overview
def _input(node, *path):
    """The input node at the (nested) link-label ``path``, or None."""
    from aiida.common.exceptions import NotExistent

    value = node.inputs
    try:
        for name in path:
            value = getattr(value, name)
    except (NotExistent, AttributeError):
        return None
    return value


def _ok(node) -> bool:
    return node is not None and node.is_finished_ok


def loop_overview(node: orm.WorkflowNode) -> dict:
    """Per iteration: frames sampled/rejected/selected, labels made, out-of-sample errors on the new batch, the
    independent test set's errors and the card; then the stop reason, the outputs and where the plots are."""
    calls: dict[int, dict[str, orm.ProcessNode]] = {}
    seed = None
    for link in node.base.links.get_outgoing(link_type=(LinkType.CALL_CALC, LinkType.CALL_WORK)).all():
        if link.link_label == 'label_seed':
            seed = link.node
        match = _STAGE.match(link.link_label)
        if match:
            stage = match.group(1) + ('_card' if match.group(3) else '')
            calls.setdefault(int(match.group(2)), {})[stage] = link.node

    parameters = loop_parameters(node.inputs.parameters)
    thresholds = parameters['thresholds']
    rows = []
    for iteration in sorted(calls):
        stages, row = calls[iteration], {'iteration': iteration}
        fit = stages.get('fit')
        if fit is not None:
            row['training_frames'] = len(_fit_training_set(fit))
            row['potential'] = fit.outputs.potential.pk if _ok(fit) else None
        elif iteration == 0 and _input(node, 'initial_potential') is not None:  # a continued loop: no refit first
            row['training_frames'] = len(node.inputs.initial_training_set)
            row['potential'] = node.inputs.initial_potential.pk
        if _ok(stages.get('select')):
            report = stages['select'].outputs.report.get_dict()
            row.update(sampled=report['num_sampled'], rejected=report['num_rejected'],
                       selected=report['num_selected'])
        made = {k: len(stages[k].outputs.training_set) for k in ('label', 'label_card')
                if k in stages and 'training_set' in stages[k].outputs}
        if made:
            row['labels'] = sum(made.values())
            row['card_labels'] = made.get('label_card', 0)
        if _ok(stages.get('errors')):
            errors = stages['errors'].outputs.result
            row['energy_per_fu_meV_rmse'] = errors['energy_per_fu_meV_rmse']
            row['forces_meV_per_A_rmse'] = errors['forces_meV_per_A_rmse']
            row['below_thresholds'] = (errors['energy_per_fu_meV_rmse'] <= thresholds['energy_meV_per_fu']
                                       and errors['forces_meV_per_A_rmse'] <= thresholds['forces_meV_per_A'])
        card = stages.get('card')
        if _ok(card) and 'card' in card.outputs:
            summary = card.outputs.card.get_dict()
            row.update(card_items_passed=summary['num_passed'], card_items=summary['num_items'],
                       card_passed=summary['passed'], card_failed=summary['failed_groups'], card=card.pk,
                       test_energy_per_fu_meV_rmse=_row_value(summary, 'test_set', 'energy'),
                       test_forces_meV_per_A_rmse=_row_value(summary, 'test_set', 'force'))
        row['final'] = (node.is_terminated and 'select' not in stages and fit is not None
                        and iteration == max(calls))
        rows.append(row)

    outputs = node.outputs
    overview = {
        'pk': node.pk, 'uuid': node.uuid, 'process_state': node.process_state.value if node.process_state else None,
        'exit_status': node.exit_status, 'exit_message': node.exit_message,
        'stop_reason': outputs.summary['stop_reason'] if 'summary' in outputs else None,
        'labeller': getattr(_input(node, 'label', 'engine'), 'value', 'reference'),
        'model': getattr(_input(node, 'fit', 'model') or _input(node, 'model'), 'value', 'gap'),  # or before stop 37
        'thresholds': thresholds, 'max_iterations': parameters['max_iterations'],
        'max_labels': parameters['max_labels'],
        'batch': merged_options(_input(node, 'select_parameters')).get('num_select'),
        'seed_labels': len(seed.outputs.training_set) if _ok(seed) else 0,
        'iterations': rows,
        'num_labels': outputs.summary['num_labels'] if 'summary' in outputs else None,
        'outputs': {key: outputs[key].pk for key in ('potential', 'training_set', 'test_set', 'reference_values',
                                                      'summary', 'card', 'learning_curve') if key in outputs},
        'plots': {key: {'pk': outputs[key].pk, 'filename': outputs[key].filename}
                  for key in ('learning_curve_plot', 'card_plot', 'card_markdown') if key in outputs},
    }
    if 'training_set' in outputs:
        overview['training_frames'] = len(outputs.training_set)
    if 'potential' in outputs:  # a loop converged on its card keeps the validated potential, fitted before the last batch
        fitted_on = outputs.potential.base.attributes.get('training_set_uuid', None)
        if fitted_on and 'training_set' in outputs and fitted_on != outputs.training_set.uuid:
            fitted = orm.load_node(fitted_on)
            overview['potential_training_set'] = {'pk': fitted.pk, 'frames': len(fitted)}
    if 'card' in outputs:
        card = outputs.card.get_dict()
        overview['card'] = {'passed': card['passed'], 'num_passed': card['num_passed'], 'num_items': card['num_items'],
                            'failing': [f'{r["group"]}: {r["item"]} (labeller {_fmt(r["labeller"])}, potential '
                                        f'{_fmt(r["potential"])}, tolerance {r["tolerance"]})'
                                        for r in card['rows'] if not r['passed']]}
    if _input(node, 'initial_training_set') is not None:
        overview['continues'] = node.base.extras.get('continues', None)
        overview['initial_training_set'] = node.inputs.initial_training_set.pk
    return overview


def write_plots(overview: dict, directory: pathlib.Path) -> list[pathlib.Path]:
    """Write the loop's PNG/Markdown outputs into ``directory`` (created; existing files are not overwritten)."""
    targets = {directory / item['filename']: item['pk'] for item in overview['plots'].values()}
    existing = [str(target) for target in targets if target.exists()]
    if existing:  # refused before anything is written
        raise AfterLoopError(f'{", ".join(existing)} exist(s): not overwritten')
    directory.mkdir(parents=True, exist_ok=True)
    for target, pk in targets.items():
        target.write_bytes(orm.load_node(pk).get_content('rb'))
    return list(targets)


# ------------------------------------------------------------------------------------------------ continue
def continuation_builder(node: orm.WorkflowNode, max_labels: int, max_iterations: int | None = None):
    """A builder for a new loop that starts from ``node``'s final TrainingSet and Potential with the same inputs
    (protocol, labeller, fit, sampler, card) and a new budget.

    ``max_labels`` is the total: the frames already in the TrainingSet count against it, so the new loop may add
    ``max_labels - len(training_set)``; ``max_iterations`` (default: the first loop's) counts the new loop's
    iterations. The new loop's inputs are the first loop's outputs, which links the two in the provenance graph;
    with a card, the labeller's side and the independent test set are reused.
    """
    if not node.is_terminated:
        raise AfterLoopError(f'ActiveLearningWorkChain<{node.pk}> is still {node.process_state.value}: continue it '
                             'once it has stopped')
    state = last_state(node)
    if state['training_set'] is None:
        raise AfterLoopError(f'ActiveLearningWorkChain<{node.pk}> ended without a final training_set and labelled '
                             f'nothing ([{node.exit_status}] {node.exit_message}): there is nothing to continue from')
    training_set, potential = state['training_set'], state['potential']
    used = len(training_set)
    parameters = node.inputs.parameters.get_dict()
    batch = merged_options(_input(node, 'select_parameters'))['num_select']
    if max_labels <= used:
        raise AfterLoopError(f'--max-labels {max_labels} is not above the {used} labels already in '
                             f'TrainingSet<{training_set.pk}>: give a larger budget')
    if max_labels - used < batch:
        raise AfterLoopError(f'--max-labels {max_labels} leaves room for {max_labels - used} new labels, fewer than '
                             f'one selected batch ({batch}): give at least {used + batch}')
    if max_iterations is not None and max_iterations < 1:
        raise AfterLoopError('--max-iterations must be at least 1')

    builder = restart_builder(node)
    parameters.update(max_labels=max_labels - used)
    if parameters.get('stages') is not None and 'summary' in node.outputs:
        # staged training goes on from the stage the first loop stopped in, not from the first stage again
        material = getattr(_input(node, 'material'), 'value', None)
        structures = {link.link_label[len('structures__'):]: link.node
                      for link in node.base.links.get_incoming(link_label_filter='structures__%').all()}
        stages = loop_stages(parameters['stages'], material, start_structures(material, structures))
        reached = max([row.get('stage', 0) for row in node.outputs.summary['iterations']] or [0])
        parameters['stages'] = stages[reached:]
    if max_iterations is not None:
        parameters['max_iterations'] = max_iterations
    builder.parameters = orm.Dict(parameters)
    builder.initial_training_set = training_set
    if potential is not None:
        builder.initial_potential = potential
    elif 'initial_potential' in builder:
        del builder.initial_potential  # the frames labelled after the last fit are fitted first
    if _input(node, 'card', 'task_code') is not None:
        for key in ('reference_values', 'test_set'):
            if state[key] is not None:
                builder.card[key] = state[key]
    builder.metadata.description = (f'continues ActiveLearningWorkChain<{node.pk}> ({node.uuid}) from '
                                    f'TrainingSet<{training_set.pk}> ({used} frames) to at most {max_labels} labels'
                                    + ('' if state['complete'] else ', recovered from what it called before it '
                                       f'stopped ({node.process_state.value})'))
    return builder


def restart_builder(node: orm.WorkflowNode):
    """``node.get_builder_restart()``, also for loops stored before the one ``fit`` namespace (stop 37), whose inputs
    ``model``, ``fit`` (the GAP's job) and ``fit_nequip`` are now ``fit.model``, ``fit.gap`` and ``fit.nequip``."""
    inputs = node.base.links.get_incoming(link_type=(LinkType.INPUT_CALC, LinkType.INPUT_WORK)).nested()
    node.recursive_merge(inputs, node.get_metadata_inputs() or {})
    fit = inputs.get('fit', {})
    if 'model' in inputs or 'fit_nequip' in inputs or not set(fit) <= {'model', 'explorer', *MODELS}:
        legacy = {'gap': inputs.pop('fit', None), 'nequip': inputs.pop('fit_nequip', None)}
        inputs['fit'] = {name: value for name, value in legacy.items() if value}
        if 'model' in inputs:
            inputs['fit']['model'] = inputs.pop('model')
    builder = node.process_class.get_builder()
    builder._update(inputs)
    return builder


def last_state(node: orm.WorkflowNode) -> dict:
    """What a loop leaves to continue from: ``training_set``, ``potential`` (None when the frames labelled after the
    last fit were never fitted), the card's ``reference_values`` and independent ``test_set``, and ``complete``.

    A loop that finished has them as outputs. One that was killed, excepted or lost its runner (a machine reboot)
    has none, but every stage it finished is in the graph: the latest merged TrainingSet (nothing labelled is lost),
    the last fit's potential when it was fitted on that set, the labeller's side of the card, and the test set its
    first card with a stable MD fixed (as the loop's ``inspect_card`` fixes it)."""
    outputs = node.outputs
    if 'training_set' in outputs and 'potential' in outputs:
        return {'complete': True, 'training_set': outputs.training_set, 'potential': outputs.potential,
                **{key: outputs[key] if key in outputs else _input(node, 'card', key)
                   for key in ('reference_values', 'test_set')}}
    called = sorted((link for link in node.base.links.get_outgoing(
        link_type=(LinkType.CALL_WORK, LinkType.CALL_CALC)).all() if link.node.is_finished_ok),
        key=lambda link: link.node.ctime)

    training_set = _input(node, 'initial_training_set')
    for link in called:  # the latest set the loop built: the seed labels, then every merge
        if link.link_label == 'label_seed' and 'training_set' in link.node.outputs:
            training_set = link.node.outputs.training_set
        elif link.link_label.startswith('merge_'):
            training_set = link.node.outputs.result
    fits = [link.node for link in called  # the loop's own fits, not its committee members' (fit_NNN_member_MM)
            if _STAGE.match(link.link_label) and link.link_label.startswith('fit_') and 'potential' in link.node.outputs]
    if fits:
        potential = fits[-1].outputs.potential if training_set is not None and \
            _fit_training_set(fits[-1]).uuid == training_set.uuid else None
    else:
        potential = _input(node, 'initial_potential') if training_set is not None and training_set.uuid == \
            getattr(_input(node, 'initial_training_set'), 'uuid', None) else None

    # the labeller's side as the loop last held it: its labeller-only card, then each potential's card that added the
    # labeller's MD volumes (inspect_card adopts them)
    cards = [link.node for link in called if 'reference_values' in link.node.outputs and (
        link.link_label == 'card_labeller' or _STAGE.match(link.link_label) and link.link_label.startswith('card_'))]
    reference_values = _input(node, 'card', 'reference_values')
    if reference_values is None and cards:
        reference_values = cards[-1].outputs.reference_values
    test_set = _input(node, 'card', 'test_set')
    if test_set is None:
        test_set = next(filter(None, map(card_test_set, cards)), None)
    return {'complete': False, 'training_set': training_set, 'potential': potential,
            'reference_values': reference_values, 'test_set': test_set}


def _fit_training_set(fit: orm.ProcessNode) -> TrainingSet:
    """The TrainingSet a loop's fit was given: a fit job's input, or its restart wrapper's (loops since the
    wrappers)."""
    if 'training_set' in fit.inputs:
        return fit.inputs.training_set
    namespaces = [model.restart_wrapper._namespace for model in MODELS.values()]
    return next(fit.inputs[namespace].training_set for namespace in namespaces if namespace in fit.inputs)


# ------------------------------------------------------------------------------------------------- profile
#: The loop's stages by the link label of what it called (``label_seed``, ``fit_002``, ``sample_001_R3m``...).
PROFILE_STAGES = {'label': 'label', 'merge': 'label', 'fit': 'fit', 'sample': 'sample', 'select': 'select',
                  'errors': 'judge', 'predict': 'judge', 'card': 'judge', 'learning': 'judge'}
#: The outputs of the plugin's jobs whose engine report has ``started_at``/``finished_at``.
_REPORTS = ('report', 'fit_report', 'train_report', 'statistics', 'results')


def program_intervals(process: orm.ProcessNode) -> list[tuple[float, float]]:
    """``(start, end)`` of every program the plugin's jobs at or below ``process`` ran, from their engines'
    reports (a job's program time, without upload, queueing, retrieval and parsing)."""
    nodes = [process] + (list(process.called_descendants) if isinstance(process, orm.WorkflowNode) else [])
    intervals = []
    for node in nodes:
        if not isinstance(node, orm.CalcJobNode):
            continue
        for name in _REPORTS:
            if name in node.outputs:
                report = node.outputs[name].get_dict()
                if report.get('started_at') and report.get('finished_at'):
                    intervals.append((float(report['started_at']), float(report['finished_at'])))
                break
    return intervals


def loop_gaps(node: orm.WorkflowNode, min_seconds: float = 1.0) -> list[dict]:
    """The stretches of a loop's wall time with no program of its jobs running (the AiiDA share, one by one), each at
    least ``min_seconds`` long: when it began (s after the loop), how long, the loop's children alive then (call link
    labels) and the processes created during it (what the engine was doing)."""
    from aiida_ferromlip.analysis import profile

    start, end = node.ctime.timestamp(), node.mtime.timestamp()
    children = [(link.link_label, link.node) for link in
                node.base.links.get_outgoing(link_type=(LinkType.CALL_CALC, LinkType.CALL_WORK)).all()]
    descendants = sorted(node.called_descendants, key=lambda n: n.ctime)
    rows = []
    for begin, finish in profile.gaps(program_intervals(node), (start, end)):
        if finish - begin < min_seconds:
            continue
        rows.append({
            'start_s': begin - start, 'length_s': finish - begin,
            'alive': [label for label, child in children
                      if child.ctime.timestamp() < finish and child.mtime.timestamp() > begin],
            'created': [f'{n.process_label}<{n.pk}> +{n.ctime.timestamp() - begin:.1f} s' for n in descendants
                        if begin <= n.ctime.timestamp() <= finish]})
    return rows


def loop_iterations(node: orm.WorkflowNode) -> list[dict]:
    """Each iteration's wall time (its first process's creation to its last one's end: fit, sampling, card,
    selection, labels and merges of ``_<nnn>``) and the time some program of it ran."""
    from aiida_ferromlip.analysis import profile

    children = [(link.link_label, link.node) for link in
                node.base.links.get_outgoing(link_type=(LinkType.CALL_CALC, LinkType.CALL_WORK)).all()]
    spans = profile.iteration_spans((label, child.ctime.timestamp(), child.mtime.timestamp())
                                    for label, child in children)
    rows = []
    for iteration, (begin, end) in spans.items():
        programs = [i for label, child in children if profile.iteration_of(label) == iteration
                    for i in program_intervals(child)]
        rows.append({'iteration': iteration, 'start_s': begin - node.ctime.timestamp(), 'wall_s': end - begin,
                     'program_s': profile.covered(profile.intersection(programs, [(begin, end)]))})
    return rows


def loop_profile(node: orm.WorkflowNode, cpu_samples: list | None = None) -> dict:
    """Where a loop's wall time went, per stage (label, fit, sample, select, judge; ``other``: the start at the
    labeller's equilibrium and the like): the wall time the stage's processes were alive (union), the time one of
    its programs ran (union of the engines' own start/end), the AiiDA share (alive, no program of the stage
    running: process management, upload/retrieval, parsing, calcfunctions) and, with ``cpu_samples`` (a
    ``analysis.profile.CpuSampler``'s), the machine's mean CPU utilisation while the stage was alive."""
    from aiida_ferromlip.analysis import profile

    stages: dict[str, dict[str, list]] = {}
    for link in node.base.links.get_outgoing(link_type=(LinkType.CALL_CALC, LinkType.CALL_WORK)).all():
        stage = PROFILE_STAGES.get(link.link_label.split('_')[0], 'other')
        alive = (link.node.ctime.timestamp(), link.node.mtime.timestamp())
        entry = stages.setdefault(stage, {'alive': [], 'programs': []})
        entry['alive'].append(alive)
        entry['programs'] += profile.intersection(program_intervals(link.node), [alive])
    total = (node.ctime.timestamp(), node.mtime.timestamp())
    rows = []
    for stage in ('label', 'fit', 'sample', 'select', 'judge', 'other'):
        if stage not in stages:
            continue
        alive, programs = profile.covered(stages[stage]['alive']), profile.covered(stages[stage]['programs'])
        rows.append({'stage': stage, 'wall_s': alive, 'program_s': programs,
                     'aiida_share': 1 - programs / alive if alive else None,
                     'cpu_utilisation': profile.mean_busy(cpu_samples, stages[stage]['alive']) if cpu_samples else None})
    every_program = [i for entry in stages.values() for i in entry['programs']]
    wall, programs = total[1] - total[0], profile.covered(every_program)
    return {'rows': rows, 'wall_s': wall, 'program_s': programs, 'aiida_share': 1 - programs / wall if wall else None,
            'cpu_utilisation': profile.mean_busy(cpu_samples, [total]) if cpu_samples else None}


def format_profile(result: dict) -> str:
    """``loop_profile`` as a Markdown table."""
    def pct(value):
        return '-' if value is None else f'{100 * value:.0f} %'

    lines = ['| stage | wall (s) | a program ran (s) | AiiDA share | CPU utilisation (all cores) |',
             '|---|---|---|---|---|']
    for row in result['rows']:
        lines.append(f"| {row['stage']} | {row['wall_s']:.0f} | {row['program_s']:.0f} | {pct(row['aiida_share'])} | "
                     f"{pct(row['cpu_utilisation'])} |")
    lines.append(f"| **loop** | {result['wall_s']:.0f} | {result['program_s']:.0f} | {pct(result['aiida_share'])} | "
                 f"{pct(result['cpu_utilisation'])} |")
    return '\n'.join(lines)


def format_iterations(rows: list[dict]) -> str:
    """``loop_iterations`` as a Markdown table."""
    lines = ['| iteration | starts at (s) | wall (s) | a program ran (s) |', '|---|---|---|---|']
    lines += [f"| {row['iteration']} | {row['start_s']:.0f} | {row['wall_s']:.0f} | {row['program_s']:.0f} |"
              for row in rows]
    return '\n'.join(lines)


# -------------------------------------------------------------------------------------------------- export
def _loop_of(potential) -> orm.WorkflowNode | None:
    """The ActiveLearningWorkChain whose fit made ``potential`` (or that returned it), if any."""
    creator = potential.creator
    caller = creator.caller if creator is not None else None
    while caller is not None:
        if caller.process_class is ActiveLearningWorkChain:
            return caller
        caller = caller.caller
    return None


def _card_of(potential) -> orm.WorkflowNode | None:
    """The newest finished physics card that judged ``potential``."""
    from aiida_ferromlip.workflows.benchmarks.physics_card import PhysicsCardWorkChain

    cards = [link.node for link in potential.base.links.get_outgoing(link_type=LinkType.INPUT_WORK).all()
             if link.link_label == 'potential' and link.node.process_class is PhysicsCardWorkChain
             and link.node.is_finished_ok and 'card' in link.node.outputs]
    return max(cards, key=lambda n: n.ctime) if cards else None


def _versions() -> dict:
    from importlib import metadata

    versions = {}
    for package in ('aiida-ferromlip', 'aiida-core', 'ase', 'quippy-ase', 'nequip', 'nequip-allegro', 'torch',
                    'sevenn', 'phonopy'):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _gap_xml_label(xml: bytes) -> str | None:
    """The label QUIP's ``Potential xml_label=...`` needs: the GAP XML's root element name."""
    match = re.search(rb'<(GAP_[0-9_]+)\b', xml)
    return match.group(1).decode() if match else None


def export_potential(potential, directory: str | os.PathLike) -> list[pathlib.Path]:
    """Write ``potential`` (any Potential node) and what a user needs beside it into the new ``directory``: the model
    file(s), ``training_set.extxyz``, the physics card (Markdown + PNG) when one judged it, ``README.md`` with the
    settings and ready-to-use ASE and LAMMPS snippets, and ``provenance.json``. Refuses an existing directory;
    writes into a temporary sibling and renames it, so a failure leaves nothing behind."""
    from ase.data import atomic_numbers

    target = pathlib.Path(directory)
    if target.exists():
        raise AfterLoopError(f'{target} exists: choose a new directory (nothing is overwritten)')
    if not target.parent.exists():
        raise AfterLoopError(f'{target.parent} does not exist')
    if not isinstance(potential, POTENTIAL_TYPES):
        raise AfterLoopError(f'node {potential.pk} is a {type(potential).__name__}, not a Potential')
    attributes = potential.base.attributes.all
    species = list(attributes.get('species', []))
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f'.{target.name}.', dir=target.parent))
    try:
        files = {}
        if isinstance(potential, GapPotential):
            model_file = 'gap.xml'
            content = potential.get_content('rb')
            files[model_file] = content
            label = _gap_xml_label(content)
            numbers = ' '.join(str(atomic_numbers[s]) for s in species)
            ase_snippet = ('from quippy.potential import Potential\n\n'
                           f"calculator = Potential(param_filename='{model_file}')\n"
                           'atoms.calc = calculator  # any ase.Atoms of ' + ', '.join(species) + '\n')
            lammps = ('# LAMMPS built with the QUIP package (ML-QUIP); atom types 1..n = '
                      + ' '.join(species) + '\n'
                      'pair_style quip\n'
                      f'pair_coeff * * {model_file} "Potential xml_label={label}" {numbers}\n')
        elif isinstance(potential, NequipPotential):
            model_file = NequipPotential.DEFAULT_FILENAME
            files[model_file] = potential.get_content('rb')
            family = attributes.get('family', 'allegro')
            compiled = attributes.get('compiled_model_uuid')
            if compiled:
                files['model.compiled.nequip.pt2'] = orm.load_node(compiled).get_content('rb')
            ase_snippet = ('from nequip.integrations.ase import NequIPCalculator\n\n'
                           f"calculator = NequIPCalculator._from_saved_model('{model_file}', device='cpu',\n"
                           '                                                 chemical_species_to_atom_type_map=True)\n'
                           'atoms.calc = calculator  # any ase.Atoms of ' + ', '.join(species) + '\n')
            pair = 'allegro' if family == 'allegro' else 'nequip'
            lammps = (f'# compile on the machine LAMMPS runs on (pair_nequip_allegro, LAMMPS >= 10 Sep 2025):\n'
                      f'#   nequip-compile {model_file} model.nequip.pt2 --device cpu --mode aotinductor '
                      f'--target pair_{pair}\n'
                      f'pair_style {pair}\n'
                      f'pair_coeff * * model.nequip.pt2 {" ".join(species)}\n')
        else:  # pragma: no cover - POTENTIAL_TYPES is checked above
            raise AfterLoopError(f'no exporter for {type(potential).__name__}')

        training_uuid = attributes.get('training_set_uuid')
        training_set = None
        if training_uuid:
            try:
                training_set = orm.load_node(training_uuid)
            except Exception:  # noqa: BLE001 - a missing set is said in the README, not fatal
                training_set = None
        card = _card_of(potential)
        loop = _loop_of(potential)

        for name, content in files.items():
            (staging / name).write_bytes(content)
        if isinstance(training_set, TrainingSet):
            training_set.write_extxyz(staging / 'training_set.extxyz')
        if card is not None:
            (staging / 'physics_card.md').write_bytes(card.outputs.markdown.get_content('rb'))
            (staging / 'physics_card.png').write_bytes(card.outputs.plot.get_content('rb'))
        (staging / 'ase_example.py').write_text(
            '"""Use the exported potential from ASE."""\nfrom ase.io import read\n\n'
            "atoms = read('training_set.extxyz', index=0)\n" + ase_snippet.replace('# any ase.Atoms', '# or any ase.Atoms')
            + 'print(atoms.get_potential_energy(), atoms.get_forces()[0])\n')
        (staging / 'lammps.in').write_text(lammps)

        creator = potential.creator
        provenance = {
            'potential': {'uuid': potential.uuid, 'pk': potential.pk, 'type': type(potential).__name__},
            'created_by': ({'uuid': creator.uuid, 'process': creator.process_label,
                            'code': creator.inputs.code.full_label if 'code' in creator.inputs else None,
                            'aiida_versions': creator.base.attributes.get('version', {})} if creator else None),
            'loop': ({'uuid': loop.uuid, 'pk': loop.pk, 'exit_status': loop.exit_status,
                      'stop_reason': loop.outputs.summary['stop_reason'] if 'summary' in loop.outputs else None}
                     if loop else None),
            'training_set': ({'uuid': training_set.uuid, 'frames': len(training_set),
                              'labellers': training_set.base.attributes.get('labellers', [])}
                             if isinstance(training_set, TrainingSet) else None),
            'labeller': _labeller_of(loop),
            'physics_card': ({'uuid': card.uuid, 'passed': card.outputs.card['passed'],
                              'num_passed': card.outputs.card['num_passed'],
                              'num_items': card.outputs.card['num_items']} if card else None),
            'exported_with': _versions(),
        }
        (staging / 'provenance.json').write_text(json.dumps(provenance, indent=2, default=str) + '\n')
        (staging / 'README.md').write_text(_readme(potential, attributes, species, model_file, training_set, card,
                                                   loop, ase_snippet, lammps, sorted(files)))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; the export is an ordinary directory
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(target.iterdir())


def _labeller_of(loop) -> dict | None:
    if loop is None:
        return None
    engine = getattr(_input(loop, 'label', 'engine'), 'value', 'reference')
    settings = {}
    namespace = _input(loop, 'label', engine)
    if namespace is not None:
        for key, value in namespace.items():
            if isinstance(value, (orm.Str, orm.Int, orm.Float, orm.Bool)):
                settings[key] = value.value
            elif isinstance(value, orm.AbstractCode):
                settings[key] = value.full_label
    return {'engine': engine, **settings}


def _readme(potential, attributes, species, model_file, training_set, card, loop, ase_snippet, lammps, files) -> str:
    settings = {key: attributes[key] for key in ('species', 'cutoff', 'descriptors', 'default_sigma', 'sparse_points',
                                                  'family', 'num_train_frames', 'fit_wall_time_s') if key in attributes}
    lines = [f'# {type(potential).__name__} {potential.uuid}', '',
             f'Exported from AiiDA (pk {potential.pk}) by `ferromlip potential export`.', '',
             '## Files', '']
    lines += [f'- `{name}`: the model' for name in files]
    if isinstance(training_set, TrainingSet):
        fitted = attributes.get('num_train_frames')
        lines.append(f'- `training_set.extxyz`: the TrainingSet given to its fit, {len(training_set)} labelled frames'
                     + (f' ({fitted} fitted, the rest held out for validation)' if fitted else '')
                     + ' (eV, eV/Å, stress in eV/Å³; `origin_*` keys name the labelling calculation)')
    if card is not None:
        summary = card.outputs.card
        lines.append(f'- `physics_card.md`, `physics_card.png`: the physics card against the labeller '
                     f'({summary["num_passed"]}/{summary["num_items"]} items pass'
                     + (', green' if summary['passed'] else f'; failing: {", ".join(summary["failed_groups"])}') + ')')
    else:
        lines.append('- no physics card judged this potential (`verdi run workflows/judge_potential.py` makes one)')
    lines += ['- `ase_example.py`, `lammps.in`: the snippets below', '- `provenance.json`: where it came from', '',
              '## Settings', '', '```json', json.dumps(settings, indent=2, default=str), '```', '']
    if loop is not None:
        lines += [f'Made by ActiveLearningWorkChain {loop.uuid} (pk {loop.pk}), exit status {loop.exit_status}'
                  + (f': {loop.outputs.summary["stop_reason"]}' if 'summary' in loop.outputs else '') + '.', '']
    lines += ['## ASE', '', '```python', ase_snippet.rstrip(), '```', '', '## LAMMPS', '', '```', lammps.rstrip(),
              '```', '']
    return '\n'.join(lines)
