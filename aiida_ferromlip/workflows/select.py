"""Selection stage: MD trajectories -> the structures worth labelling next.

``select_candidates`` is a calcfunction (seconds of SOAP + FPS, so it runs in the daemon with full provenance):
physical-sanity filter, decorrelation by the energy autocorrelation time (BaTiO3-GAP paper), then structure-level
farthest-point sampling on SOAP against the current TrainingSet. Each selected ``StructureData`` records the
trajectory and frame it came from.
"""

from __future__ import annotations

import io

import numpy as np
from aiida import orm
from aiida.engine import calcfunction
from ase import Atoms

from aiida_ferromlip.analysis.plots import figure_png
from aiida_ferromlip.analysis.selection import decorrelation, sanity_problem, select_diverse
from aiida_ferromlip.analysis.soap import soap_hypers
from aiida_ferromlip.protocols import merged_settings

DEFAULTS = {
    'num_select': 10,
    'equilibration_fraction': 0.1,   # frames dropped at the start of every trajectory
    'decorrelate': True,
    # trust the energy autocorrelation time only when a trajectory's usable frames span this many times it (else
    # keep its last usable frame); Sokal's window constant (analysis.selection.decorrelation)
    'decorrelation': {'min_spans': 50.0, 'window_c': 5.0},
    'soap': {'cutoff': 5.0, 'n_max': 6, 'l_max': 4, 'atom_sigma': 0.5},
    'sanity': {'min_distance': 0.6, 'max_force': 20.0, 'max_temperature_factor': 3.0, 'max_energy_jump': 1.0},
}


def trajectory_frames(trajectory: orm.TrajectoryData) -> list[Atoms]:
    """Frames of a sampler's TrajectoryData as ASE atoms (no calculator)."""
    symbols = trajectory.symbols
    positions, cells = trajectory.get_positions(), trajectory.get_cells()
    pbc = trajectory.pbc if trajectory.pbc is not None else [True, True, True]
    return [Atoms(symbols=symbols, positions=positions[i], cell=cells[i], pbc=pbc) for i in range(len(positions))]


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
    return options


@calcfunction
def select_candidates(parameters: orm.Dict | None = None, training_set=None, **trajectories):
    """Pick structures to label from sampler trajectories, far from each other and from ``training_set``."""
    options = merged_options(parameters)
    if not trajectories:
        raise ValueError('no trajectories to select from')
    candidates, sources, summary = [], [], {}
    for key in sorted(trajectories):
        trajectory = trajectories[key]
        kept, rejected, trajectory_summary = screen_trajectory(trajectory, options)
        frames = trajectory_frames(trajectory)
        steps = trajectory.get_stepids() if trajectory.get_stepids() is not None else range(len(frames))
        targets = (trajectory.get_array('target_temperatures')
                   if 'target_temperatures' in trajectory.get_arraynames() else [None] * len(frames))
        for i in kept:
            candidates.append(frames[i])
            sources.append({'trajectory_uuid': trajectory.uuid, 'trajectory_key': key, 'frame_index': int(i),
                            'step': int(steps[i]),
                            'target_temperature': None if targets[i] is None else float(targets[i])})
        trajectory_summary['rejected_reasons'] = {str(i): reason for i, reason in rejected.items()}
        summary[key] = trajectory_summary

    existing = training_set.to_atoms() if training_set is not None else []
    soap = options['soap']
    hypers = soap_hypers(soap['cutoff'], soap['n_max'], soap['l_max'], soap.get('atom_sigma', 0.5))
    if candidates:
        picked, distances = select_diverse(candidates, int(options['num_select']), hypers, existing)
    else:
        picked, distances = np.zeros(0, dtype=int), np.zeros(0)
    outputs = {}
    for rank, (index, distance) in enumerate(zip(picked, distances)):
        structure = orm.StructureData(ase=candidates[index])
        structure.base.attributes.set('ferromlip_source', {**sources[index], 'fps_rank': rank,
                                                           'fps_distance': float(distance)})
        outputs[f'selected_{rank:04d}'] = structure
    report = {
        'trajectories': summary,
        'num_sampled': sum(s['frames'] for s in summary.values()),
        'num_rejected': sum(s['rejected'] for s in summary.values()),
        'num_candidates': len(candidates),
        # trajectories too short to show their autocorrelation time: each gave its last usable frame only
        'num_unresolved_trajectories': sum(not s['autocorrelation_reliable'] for s in summary.values()),
        'num_selected': len(outputs),
        'fps_distances': [float(d) for d in distances],
        'num_existing': len(existing),
    }
    outputs['report'] = orm.Dict(report)
    outputs['plot'] = orm.SinglefileData(io.BytesIO(selection_plot(trajectories, summary, sources, picked, distances)),
                                         filename='selection.png')
    return outputs


def selection_plot(trajectories, summary, sources, picked, distances) -> bytes:
    """Energy traces with rejected and selected frames marked, and the FPS distance of each pick."""
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
    right.plot(range(1, len(distances) + 1), distances, 'o-')
    right.set_xlabel('pick')
    right.set_ylabel('FPS distance to held/earlier points')
    right.set_title('farthest-point sampling')
    return figure_png(figure, dpi=100)
