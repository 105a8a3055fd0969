"""Selection stage: MD trajectories -> the structures worth labelling next.

``select_candidates`` is a calcfunction (seconds of SOAP + FPS, so it runs in the daemon with full provenance):
physical-sanity filter, decorrelation by the energy autocorrelation time (BaTiO3-GAP paper), then one of the
selectors of ``analysis.selection.SELECTORS``: ``fps`` (structure-level farthest-point sampling on SOAP against the
current TrainingSet, the default), ``random``, ``uncertainty`` or ``fps+uncertainty``. The last two read an
uncertainty score of every frame (``predictions``: the results of an ``energies`` task job on the trajectories —
with a CommitteePotential its max force deviation, with the loop's GAP and ``uncertainty: gap_variance`` quippy's
predictive standard deviation; ``analysis.selection.UNCERTAINTY_SOURCES``) and the trust levels (``trust``, from
``trust_levels``). Each selected ``StructureData`` records the trajectory and frame it came from.
"""

from __future__ import annotations

import io

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_ferromlip.analysis.plots import figure_png
from aiida_ferromlip.analysis.selection import (
    NEEDS_UNCERTAINTY,
    SELECTORS,
    UNCERTAINTY_SOURCES,
    calibrate_trust,
    checked_band,
    decorrelation,
    sanity_problem,
    select_frames,
    trust_bands,
)
from aiida_ferromlip.analysis.soap import soap_hypers
from aiida_ferromlip.data.training_set import trajectory_frames
from aiida_ferromlip.protocols import default_inputs, merged_settings

#: The selection's settings (protocols/select.yaml says what each means).
DEFAULTS = default_inputs('select')['parameters']
#: Axis labels of the uncertainty scores, by source.
SCORE_LABELS = {'committee': 'committee max force deviation (eV/Å)',
                'gap_variance': "the GAP's predictive std of the local energies, max (eV)"}


def screen_trajectory(trajectory: orm.TrajectoryData, options: dict) -> tuple[list[int], dict, dict]:
    """``(kept frame indices, rejected {index: reason}, summary)`` after the sanity filter and decorrelation."""
    frames = trajectory_frames(trajectory)
    energies = trajectory.get_array('energies') / len(trajectory.symbols)
    forces = trajectory.get_array('forces') if 'forces' in trajectory.get_arraynames() else None
    temperatures = trajectory.get_array('temperatures') if 'temperatures' in trajectory.get_arraynames() else None
    targets = (trajectory.get_array('target_temperatures')
               if 'target_temperatures' in trajectory.get_arraynames() else None)
    reference = float(np.median(energies))
    rejected = {}
    for i, atoms in enumerate(frames):
        reason = sanity_problem(
            atoms, energy_per_atom=float(energies[i]), reference_energy_per_atom=reference,
            forces=None if forces is None else forces[i],
            temperature=None if temperatures is None else float(temperatures[i]),
            target_temperature=None if targets is None else float(targets[i]), **options['sanity'])
        if reason:
            rejected[i] = reason
    sane = [i for i in range(len(frames)) if i not in rejected]
    skip = int(np.floor(options['equilibration_fraction'] * len(frames)))
    sane = [i for i in sane if i >= skip]
    if options['decorrelate']:
        result = decorrelation(energies, sane, **options['decorrelation'])
    else:
        result = {'kept': sane, 'tau': 1.0, 'spans': float(len(sane)), 'reliable': True, 'stride': 1}
    kept = result['kept']
    summary = {'frames': len(frames), 'rejected': len(rejected), 'equilibration_skipped': skip,
               'autocorrelation_time_frames': result['tau'], 'autocorrelation_spans': result['spans'],
               'autocorrelation_reliable': result['reliable'], 'stride_frames': result['stride'],
               'decorrelated': len(kept)}
    return kept, rejected, summary


def merged_options(parameters: orm.Dict | None) -> dict:
    """DEFAULTS with the user's parameters merged in (one level deep for the nested groups), not mutated."""
    options = merged_settings(parameters, DEFAULTS, 'selection')
    if int(options['num_select']) < 1:
        raise ValueError('`num_select` must be at least 1')
    if options['selector'] not in SELECTORS:
        raise ValueError(f'unknown selector `{options["selector"]}`; known: {", ".join(SELECTORS)}')
    checked_band(options['trust_errors'], '`trust_errors`')
    if options['uncertainty'] not in UNCERTAINTY_SOURCES:
        raise ValueError(f'unknown uncertainty `{options["uncertainty"]}`; known: {", ".join(UNCERTAINTY_SOURCES)}')
    return options


def needs_uncertainty(parameters: orm.Dict | None) -> bool:
    """Whether the selector of ``parameters`` scores candidates with an uncertainty."""
    return merged_options(parameters)['selector'] in NEEDS_UNCERTAINTY


def needs_committee(parameters: orm.Dict | None) -> bool:
    """Whether the selector of ``parameters`` scores candidates with a committee (not the GAP's own variance)."""
    return needs_uncertainty(parameters) and merged_options(parameters)['uncertainty'] == 'committee'


def uncertainty_key(parameters: orm.Dict | None) -> str:
    """The name of the uncertainty score in the scoring task's rows."""
    return UNCERTAINTY_SOURCES[merged_options(parameters)['uncertainty']]


@calcfunction
def trust_levels(parameters: orm.Dict | None = None, **pairs: orm.Dict) -> dict:
    """The trust levels for the next selection, calibrated on the frames labelled so far (each ``pairs``
    Dict: uncertainty scores ``deviations`` and true ``errors``, eV/Å, of one batch; see ``deviation_error_pairs``),
    and the plot."""
    options = merged_options(parameters)
    deviations = [d for key in sorted(pairs) for d in pairs[key]['deviations']]
    errors = [e for key in sorted(pairs) for e in pairs[key]['errors']]
    levels = calibrate_trust(deviations, errors, options['trust_errors'])
    return {'trust': orm.Dict(levels),
            'plot': orm.SinglefileData(io.BytesIO(trust_plot(deviations, errors, levels,
                                                                           SCORE_LABELS[options['uncertainty']])),
                                       filename='trust.png')}


@calcfunction
def deviation_error_pairs(predictions: orm.Dict, predicted, labels, parameters: orm.Dict | None = None,
                          **selected: orm.StructureData) -> orm.Dict:
    """For every labelled frame that was a scored candidate: its uncertainty score (``parameters``' source: the
    committee's max force deviation, or the GAP's predictive std) and the true max force error of the scoring
    model's forces (eV/Å: the committee mean, or the GAP). ``predictions`` and ``predicted`` are the results and
    frames of the scoring task job on the trajectories, ``labels`` the labelled batch, ``selected`` the structures it
    labelled (their ``ferromlip_source`` names the trajectory frame)."""
    from aiida_ferromlip.calculations.atoms_task import trajectory_frame_key

    rows = predictions['rows']
    score = uncertainty_key(parameters)
    predicted_index = {origin['frame_key']: i for i, origin in enumerate(predicted.origins)}
    sources = {node.uuid: node.base.attributes.get('ferromlip_source', {}) for node in selected.values()}
    deviations, errors, keys = [], [], []
    for index, origin in enumerate(labels.origins):
        source = sources.get(origin.get('structure_uuid'), {})
        if 'trajectory_key' not in source:
            continue
        key = trajectory_frame_key(source['trajectory_key'], source['frame_index'])
        if key not in rows or key not in predicted_index:
            continue
        true_forces = labels.get_frame(index).get_forces()
        mean_forces = predicted.get_frame(predicted_index[key]).get_forces()
        deviations.append(float(rows[key][score]))
        errors.append(float(np.linalg.norm(true_forces - mean_forces, axis=1).max()))
        keys.append(key)
    return orm.Dict({'deviations': deviations, 'errors': errors, 'frame_keys': keys})


def trust_plot(deviations, errors, levels: dict, score_label: str = SCORE_LABELS['committee']) -> bytes:
    """True max force error against the uncertainty score, the calibration line and the band."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 4))
    if deviations:
        axis.loglog(deviations, errors, 'o', ms=4, alpha=0.7, label='labelled frames')
        span = np.geomspace(min(deviations), max(deviations), 20)
        axis.loglog(span, levels['factor'] * span, '-', label=f'error = {levels["factor"]:.3g} x score')
    for value, name in ((levels['lower'], 'lower'), (levels['upper'], 'upper')):
        axis.axvline(value, ls='--', color='grey')
        axis.text(value, axis.get_ylim()[1] if deviations else 1, f' {name}', va='top', fontsize=8)
    axis.set_xlabel(score_label)
    axis.set_ylabel('true max force error (eV/Å)')
    state = 'calibrated' if levels['calibrated'] else 'uncalibrated (too few labelled frames)'
    axis.set_title(f'trust levels, {state}', fontsize=9)
    if deviations:
        axis.legend(fontsize=7)
    return figure_png(figure, dpi=100)


@calcfunction
def select_candidates(parameters: orm.Dict | None = None, training_set=None, predictions: orm.Dict | None = None,
                      trust: orm.Dict | None = None, **trajectories):
    """Pick structures to label from sampler trajectories with the selector of ``parameters`` (FPS by default: far
    from each other and from ``training_set``)."""
    from aiida_ferromlip.calculations.atoms_task import trajectory_frame_key

    options = merged_options(parameters)
    selector = options['selector']
    if not trajectories:
        raise ValueError('no trajectories to select from')
    if selector in NEEDS_UNCERTAINTY and (predictions is None or trust is None):
        raise ValueError(f'selector `{selector}` needs `predictions` (uncertainty scores of the trajectories) and '
                         '`trust`')
    score_key = uncertainty_key(parameters)
    candidates, sources, summary, deviations = [], [], {}, []
    for key in sorted(trajectories):
        trajectory = trajectories[key]
        kept, rejected, trajectory_summary = screen_trajectory(trajectory, options)
        frames = trajectory_frames(trajectory)
        steps = trajectory.get_stepids() if trajectory.get_stepids() is not None else range(len(frames))
        targets = (trajectory.get_array('target_temperatures')
                   if 'target_temperatures' in trajectory.get_arraynames() else [None] * len(frames))
        for i in kept:
            if predictions is not None:
                row = predictions['rows'].get(trajectory_frame_key(key, int(i)))
                if row is None:  # the scoring failed on this frame: a frame no model can evaluate is not a label
                    continue
                deviations.append(float(row[score_key]))
            candidates.append(frames[i])
            sources.append({'trajectory_uuid': trajectory.uuid, 'trajectory_key': key, 'frame_index': int(i),
                            'step': int(steps[i]),
                            'target_temperature': None if targets[i] is None else float(targets[i])})
        trajectory_summary['rejected_reasons'] = {str(i): reason for i, reason in rejected.items()}
        summary[key] = trajectory_summary

    existing = training_set.to_atoms() if training_set is not None else []
    soap = options['soap']
    hypers = soap_hypers(soap['cutoff'], soap['n_max'], soap['l_max'], soap.get('atom_sigma', 0.5))
    levels = (trust['lower'], trust['upper']) if trust is not None else None
    if levels and not trust['calibrated'] and deviations:
        # Before any labelled frame calibrates them, the levels cannot be trusted: the committee's deviation was
        # measured 6x below the true error on the first batches here, so the error targets used as deviation levels
        # left 2 of 96 candidates inside the band and stopped the loop after one batch (the selection ablation,
        # docs/sampling.md). Until calibrated, the lower level is the median deviation: the more uncertain half.
        levels = (min(float(np.median(deviations)), levels[1] * (1 - 1e-9)), levels[1])
    picked, scores = select_frames(selector, candidates, int(options['num_select']), hypers=hypers,
                                   existing=existing, deviations=deviations if predictions is not None else None,
                                   trust=levels, seed=int(options['seed']) + len(existing))
    outputs = {}
    for rank, (index, score) in enumerate(zip(picked, scores)):
        structure = orm.StructureData(ase=candidates[index])
        source = {**sources[index], 'selector': selector, 'rank': rank, 'score': float(score)}
        if selector.startswith('fps'):
            source.update(fps_rank=rank, fps_distance=float(score))
        if deviations:
            source[score_key] = deviations[index]
        structure.base.attributes.set('ferromlip_source', source)
        outputs[f'selected_{rank:04d}'] = structure
    report = {
        'trajectories': summary,
        'num_sampled': sum(s['frames'] for s in summary.values()),
        'num_rejected': sum(s['rejected'] for s in summary.values()),
        'num_candidates': len(candidates),
        # trajectories too short to show their autocorrelation time: each gave its last usable frame only
        'num_unresolved_trajectories': sum(not s['autocorrelation_reliable'] for s in summary.values()),
        'num_selected': len(outputs),
        'selector': selector,
        'scores': [float(d) for d in scores],
        'fps_distances': [float(d) for d in scores] if selector.startswith('fps') else [],
        'num_existing': len(existing),
    }
    if predictions is not None:
        bands = trust_bands(deviations, *levels) if levels else np.zeros(0)
        report['trust'] = {'lower': float(levels[0]), 'upper': float(levels[1]),
                           'calibrated': bool(trust.get('calibrated', False)),
                           'accurate': int(np.sum(bands == 0)), 'candidate': int(np.sum(bands == 1)),
                           'failed': int(np.sum(bands == 2)),
                           'uncertainty': options['uncertainty'], 'score_name': score_key,
                           'score_median': float(np.median(deviations)) if deviations else None}
    outputs['report'] = orm.Dict(report)
    outputs['plot'] = orm.SinglefileData(io.BytesIO(selection_plot(trajectories, summary, sources, picked, scores,
                                                                   selector, SCORE_LABELS[options['uncertainty']])),
                                         filename='selection.png')
    return outputs


def selection_plot(trajectories, summary, sources, picked, scores, selector: str = 'fps',
                   score_label: str = SCORE_LABELS['committee']) -> bytes:
    """Energy traces with rejected and selected frames marked, and the score of each pick (FPS distance, committee
    deviation)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key in sorted(trajectories):
        trajectory = trajectories[key]
        energies = trajectory.get_array('energies') / len(trajectory.symbols)
        line, = left.plot(energies, lw=0.8, label=key)
        bad = [int(i) for i in summary[key]['rejected_reasons']]
        left.plot(bad, energies[bad], 'x', color='red')
        chosen = [sources[i]['frame_index'] for i in picked if sources[i]['trajectory_key'] == key]
        left.plot(chosen, energies[chosen], 'o', mfc='none', color=line.get_color())
    left.set_xlabel('frame')
    left.set_ylabel('potential energy (eV/atom)')
    left.set_title('trajectories (o selected, x rejected)')
    left.legend(fontsize=7)
    right.plot(range(1, len(scores) + 1), scores, 'o-')
    right.set_xlabel('pick')
    right.set_ylabel({'fps': 'FPS distance to held/earlier points', 'fps+uncertainty': 'FPS distance',
                      'uncertainty': score_label}.get(selector, 'score'))
    right.set_title(f'selector: {selector}')
    return figure_png(figure, dpi=100)
