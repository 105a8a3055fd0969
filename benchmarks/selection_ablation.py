"""What each selector buys: the same loop, the same start and label budget, every selector with several seeds.

    verdi run benchmarks/selection_ablation.py [--seeds 3] [--iterations 3] [--batch 6] [--tag ablation]
        [--selectors random fps uncertainty fps+uncertainty] [--plot docs/img/selection_ablation.png]
        [--starts R3m Pm-3m] [--ensemble nst] [--temperatures 100 300] [--uncertainty gap_variance]
        [--test-from labeller] [--card]

1. An independent test set, never offered to any selector: a pilot loop (its own seed, `random` selection) gives a
   potential; NST MD of it at 100 and 300 K (the physics card's recipe, ``test_set_structures``: frames drawn at
   random, not by FPS, after the first quarter of each run) gives the frames; the reference labeller labels them.
   ``--test-from labeller`` runs that MD with the reference model itself instead of a pilot potential: the
   distribution the loops aim at, whatever a pilot potential's MD does (a pilot that over-expands under NST puts
   its failures into the test set).
2. For every selector and seed: ``ActiveLearningWorkChain`` (BaTiO3 from R3m, the `fast` GAP, the same 6 seed
   labels in all (split between the starts); REMD 4 x 100 steps, every 4th frame a candidate: 100 per iteration) for ``--iterations``
   iterations with thresholds of zero, so every run spends the same budget. The seed moves the sampler's random
   numbers and the selector's. Committees: the protocol's (4 members).
3. Every potential a run fitted (one per iteration and the final one) predicts the test set in a task job; the
   errors against the labels give the learning curve on the test set, and the labels each run needed to bring the
   test-set errors below the loop's thresholds (5 meV/f.u., 100 meV/Å).
   ``--starts``, ``--ensemble`` and ``--temperatures`` change where the loops sample (default: R3m, NVT, the `fast`
   sampler's 50-300 K): ``--starts R3m Pm-3m --ensemble nst --temperatures 100 300`` samples as the test set was drawn,
   so that the candidates cover the test distribution and the choice among them is what is measured.
   ``--uncertainty gap_variance`` scores the uncertainty selectors' candidates with the GAP's own predicted variance
   instead of the protocol's committee (no member fits; `random` and `fps` runs do not depend on it).

4. With ``--card``, every run's final potential is judged by the `fast` physics card against the labeller (its
   labeller side computed once per tag), with the test set above as the card's: items passed per run.

Prints the table (labels to the thresholds, mean ± spread over seeds; test-set errors at the end) and writes the PNG
(test-set force RMSE vs labels per selector). Finished runs are found again by ``--tag`` (node extras), so a stopped
ablation resumes where it was.
"""

import argparse
import json

import numpy as np
from aiida import orm

from aiida_ferromlip.calculations.atoms_task import AtomsTaskCalculation
from aiida_ferromlip.calculations.sample import SampleCalculation
from aiida_ferromlip.codes import add_code_options, codes_from_arguments
from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.launch import run_get_node
from aiida_ferromlip.materials import batio3_polymorphs
from aiida_ferromlip.workflows.loop.active_learning import ActiveLearningWorkChain
from aiida_ferromlip.workflows.label.base import LabelWorkChain
from aiida_ferromlip.workflows.benchmarks.physics_card import PhysicsCardWorkChain, test_set_errors, test_set_structures

THRESHOLDS = {'energy_meV_per_fu': 5.0, 'forces_meV_per_A': 100.0}


def starts(phases=('R3m', 'Pm-3m')):
    return {p.replace('-', '_'): orm.StructureData(ase=batio3_polymorphs()[p]) for p in phases}


def find(tag: str, **extras):
    query = orm.QueryBuilder().append(orm.ProcessNode, filters={
        'extras.ablation': tag, **{f'extras.{k}': v for k, v in extras.items()}}, project='*')
    nodes = [n for (n,) in query.all() if n.is_finished_ok or n.exit_status == 501]
    return max(nodes, key=lambda n: n.ctime) if nodes else None


DEFAULT_SAMPLING = {'starts': ['R3m'], 'ensemble': 'nvt', 'temperatures': None}


def loop(code, tag: str, selector: str, seed: int, iterations: int, batch: int, run: bool = True,
         sampling: dict | None = None, uncertainty: str = 'committee'):
    sampling = {**DEFAULT_SAMPLING, **(sampling or {})}
    if 'uncertainty' not in selector:
        uncertainty = 'committee'  # the score is not used: the same runs serve either source
    # runs made before the sampling was a choice carry no `sampling` extra: they are the default's
    # (a string: the SQLite storage cannot filter on a JSON object)
    extra = {} if sampling == DEFAULT_SAMPLING else {'sampling': '{}/{}/{}'.format(
        '+'.join(sampling['starts']), sampling['ensemble'],
        ','.join(f'{t:g}' for t in sampling['temperatures']) if sampling['temperatures'] else 'protocol')}
    if uncertainty != 'committee':
        # runs made before the source was a choice carry no `uncertainty` extra: they are the committee's
        extra['uncertainty'] = uncertainty
    node = find(tag, selector=selector, seed=seed, iterations=iterations, batch=batch, **extra)
    if node is not None or not run:
        return node
    sample = {'seed': seed, 'steps': 100, 'stride': 4}
    if sampling['ensemble'] != 'nvt':
        # the test set's NST recipe (the physics card's): thermostat 10 fs, barostat 1 ps
        sample.update({'ensemble': sampling['ensemble'], 'thermostat_tau_fs': 10, 'barostat_tau_fs': 1000})
    if sampling['temperatures']:
        sample['temperatures'] = list(sampling['temperatures'])
    per_start = max(1, 6 // len(sampling['starts']))  # 6 seed labels in all, whatever the starts
    overrides = {'parameters': {'max_iterations': iterations,
                                'max_labels': per_start * len(sampling['starts']) + batch * iterations,
                                'seed_frames_per_structure': per_start, 'thresholds': {'energy_meV_per_fu': 0.0,
                                                                               'forces_meV_per_A': 0.0}},
                 # every frame after equilibration is a candidate (the `fast` sampler's runs are too short for the
                 # autocorrelation time: decorrelation would leave one frame per trajectory, 8 in all, and nothing to
                 # choose between); 100 steps, every 4th frame: 200 frames per iteration, as in the demo
                 'select_parameters': {'num_select': batch, 'selector': selector, 'seed': seed, 'decorrelate': False,
                                       'uncertainty': uncertainty},
                 'sample': {'overrides': {'parameters': sample}},
                 'fit': {'gap': {'protocol': 'fast', 'overrides': {'parameters': {'clip_sparse': True}}}}}
    builder = ActiveLearningWorkChain.get_builder_from_protocol(code['label'], code['gap'], code['md'],
                                                                structures=starts(tuple(sampling['starts'])),
                                                                protocol='fast',
                                                                overrides=overrides)
    builder.task_code = code['task']
    _, node = run_get_node(builder)
    node.base.extras.set_many({'ablation': tag, 'selector': selector, 'seed': seed, 'iterations': iterations,
                               'batch': batch, **extra})
    print(f'  {selector} seed {seed}: ActiveLearningWorkChain<{node.pk}> [{node.exit_status}] '
          f'{node.outputs.summary["stop_reason"] if "summary" in node.outputs else node.exit_message}', flush=True)
    return node


def test_set(code, tag: str, iterations: int, batch: int, given: int | None = None,
             source: str = 'pilot') -> TrainingSet:
    """The independent test set: frames drawn at random from NST MD at the card's temperatures, from R3m and Pm-3m,
    labelled by the reference labeller. ``source``: whose MD — ``pilot``, the potential of a separate `random` loop
    (seed 100); or ``labeller``, the reference model itself (``7net-0``: the distribution every loop aims at, and
    no pilot potential's own failures in it)."""
    if given is not None:
        return orm.load_node(given)
    role = 'test_set' if source == 'pilot' else f'test_set_{source}'
    node = find(tag, role=role)
    if node is not None:
        return node.outputs.training_set
    if source == 'pilot':
        model, whose = loop(code, f'{tag}-pilot', 'random', 100, iterations, batch).outputs.potential, 'the pilot loop'
    else:
        model, whose = orm.Str('7net-0'), 'the reference model, 7net-0'
    settings = PhysicsCardWorkChain.get_protocol_inputs('fast')['parameters']
    trajectories = {}
    for temperature in settings['md_temperatures']:
        parameters = {'mode': 'remd', 'ensemble': 'nst', 'exchange': False, 'temperatures': [temperature],
                      'steps': settings['md_steps'], 'stride': settings['md_stride'], 'thermostat_tau_fs': 10,
                      'barostat_tau_fs': 1000, 'seed': 100}
        for key, structure in starts().items():
            _, md = run_get_node(SampleCalculation, code=code['md'], potential=model,
                                 structure=structure, parameters=orm.Dict(parameters))
            if md.is_finished_ok:
                for name, trajectory in md.outputs.trajectories.items():
                    trajectories[f'md_{key}_{temperature}K_{name}'] = trajectory
    card = orm.Dict({**settings, 'test_md_frames': 40, 'test_polymorph_frames': 0})
    structures = test_set_structures(card, **trajectories)
    builder = LabelWorkChain.get_builder_from_protocol(code['label'], structures, 'fast')
    _, node = run_get_node(builder)
    node.base.extras.set_many({'ablation': tag, 'role': role})
    print(f'independent test set: TrainingSet<{node.outputs.training_set.pk}> ({len(node.outputs.training_set)} frames '
          f'from MD of {whose} {model.pk})', flush=True)
    return node.outputs.training_set


def curve(code, node, reference: TrainingSet) -> list[dict]:
    """(labels, test-set errors) for every potential the loop fitted, in order."""
    fits = sorted((link.link_label, link.node) for link in node.base.links.get_outgoing().all()
                  if link.link_label.startswith('fit_') and '_member_' not in link.link_label)
    structures = {origin['frame_key']: reference.get_structure(i) for i, origin in enumerate(reference.origins)}
    rows = []
    for label, fit in fits:
        if not fit.is_finished_ok:
            continue
        potential = fit.outputs.potential
        cached = potential.base.extras.get('ablation_test_errors', {}).get(reference.uuid)
        if cached is None:
            _, task = run_get_node(AtomsTaskCalculation, code=code['task'], model=potential, structures=structures,
                                   task=orm.Dict({'task': 'energies'}))
            cached = test_set_errors(reference, task.outputs.labels).get_dict()
            potential.base.extras.set('ablation_test_errors', {reference.uuid: cached})
        training = orm.load_node(potential.base.attributes.get('training_set_uuid'))
        rows.append({'fit': label, 'labels': len(training), 'energy': cached['energy_per_fu_meV_rmse'],
                     'forces': cached['forces_meV_per_A_rmse']})
    return rows


def card(code, node, tag: str, reference: TrainingSet) -> dict:
    """The `fast` physics card of a run's final potential against the labeller, with the ablation's test set as the
    card's: items passed, items, the groups that failed. The labeller's side is computed once per tag (the first
    card's) and reused; each result is kept on the potential (extras), so a rerun only reports it."""
    potential = node.outputs.potential
    key = f'{tag}:{reference.uuid}'
    done = potential.base.extras.get('ablation_card', {})
    if key in done:
        return done[key]
    builder = PhysicsCardWorkChain.get_builder_from_protocol(code['label'], code['task'], code['md'],
                                                             potential=potential, material='BaTiO3', protocol='fast')
    labeller = find(tag, role='card_reference')
    if labeller is not None:
        builder.reference_values = labeller.outputs.reference_values
    builder.test_set = reference
    _, judged = run_get_node(builder)
    if 'card' not in judged.outputs:
        return {'passed': 0, 'items': 0, 'failed': [f'[{judged.exit_status}] {judged.exit_message}'], 'pk': judged.pk}
    if labeller is None:
        judged.base.extras.set_many({'ablation': tag, 'role': 'card_reference'})
    summary = judged.outputs.card.get_dict()
    result = {'passed': summary['num_passed'], 'items': summary['num_items'], 'failed': summary['failed_groups'],
              'pk': judged.pk}
    potential.base.extras.set('ablation_card', {**done, key: result})
    return result


def labels_to_thresholds(rows: list[dict]) -> float:
    """Labels of the first potential whose test-set errors are both below the thresholds (nan: never)."""
    for row in rows:
        if row['energy'] <= THRESHOLDS['energy_meV_per_fu'] and row['forces'] <= THRESHOLDS['forces_meV_per_A']:
            return float(row['labels'])
    return float('nan')


def mean_curve(runs: dict, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels and the seeds' mean test-set error, at every label count some seed reached up to the smallest final
    count of all seeds; each seed's curve is read linearly between its own counts (an uncertainty selector may label
    fewer than a batch when fewer candidates fall inside its band, so the seeds' counts differ)."""
    curves = [(np.array([row['labels'] for row in rows]), np.array([row[key] for row in rows]))
              for rows in runs.values() if rows]
    last = min(labels[-1] for labels, _ in curves)
    counts = np.array(sorted({n for labels, _ in curves for n in labels if n <= last}))
    return counts, np.mean([np.interp(counts, labels, errors) for labels, errors in curves], axis=0)


def labels_to_reach(runs: dict, key: str, level: float) -> float:
    """Labels at which the seeds' mean error first reaches ``level``, linear between label counts (nan: never)."""
    labels, errors = mean_curve(runs, key)
    for index in range(len(labels)):
        if errors[index] <= level:
            if index == 0:
                return float(labels[0])
            fraction = (errors[index - 1] - level) / (errors[index - 1] - errors[index])
            return float(labels[index - 1] + fraction * (labels[index] - labels[index - 1]))
    return float('nan')


def plot(results: dict, path: str):
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for selector, runs in results.items():
        for index, (key, axis) in enumerate((('forces', axes[0]), ('energy', axes[1]))):
            for number, rows in enumerate(runs.values()):
                axis.plot([r['labels'] for r in rows], [r[key] for r in rows], 'o-', ms=3, alpha=0.7,
                          color=f'C{list(results).index(selector)}', label=selector if number == 0 else None)
    axes[0].axhline(THRESHOLDS['forces_meV_per_A'], ls='--', color='grey')
    axes[1].axhline(THRESHOLDS['energy_meV_per_fu'], ls='--', color='grey')
    axes[0].set_ylabel('test-set force RMSE (meV/Å)')
    axes[1].set_ylabel('test-set energy RMSE (meV/f.u.)')
    for axis in axes:
        axis.set_xlabel('labels')
        axis.set_yscale('log')
        axis.legend(fontsize=8)
    figure.suptitle('selection ablation: BaTiO3, reference labeller, fast GAP (one line per seed)', fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seeds', type=int, default=3)
    parser.add_argument('--iterations', type=int, default=3)
    parser.add_argument('--batch', type=int, default=6)
    parser.add_argument('--tag', default='ablation')
    parser.add_argument('--selectors', nargs='+', default=['random', 'fps', 'uncertainty', 'fps+uncertainty'])
    parser.add_argument('--plot', default='docs/img/selection_ablation.png')
    parser.add_argument('--json', default=None, help='also write the per-run curves here')
    parser.add_argument('--test-set', type=int, default=None, help='an existing TrainingSet as the test set')
    parser.add_argument('--test-from', choices=('pilot', 'labeller'), default='pilot',
                        help="whose NST MD the test set is drawn from: a pilot loop's potential or the labeller's")
    parser.add_argument('--no-run', action='store_true', help='report the finished runs only (start none)')
    parser.add_argument('--card', action='store_true',
                        help="judge every run's final potential with the `fast` physics card (the test set: this one)")
    parser.add_argument('--starts', nargs='+', default=DEFAULT_SAMPLING['starts'], help='start phases of every loop')
    parser.add_argument('--ensemble', choices=('nvt', 'nst'), default=DEFAULT_SAMPLING['ensemble'])
    parser.add_argument('--temperatures', nargs='+', type=float, default=None,
                        help="the sampler's temperatures (default: the `fast` sampler's)")
    parser.add_argument('--uncertainty', choices=('committee', 'gap_variance'), default='committee',
                        help="the uncertainty selectors' score: the protocol's committee or the GAP's own variance")
    add_code_options(parser, 'label', 'gap', 'md', 'task')
    args = parser.parse_args()
    codes = codes_from_arguments(parser, args, 'label', 'gap', 'md', 'task')
    code = codes
    reference = test_set(code, args.tag, args.iterations, args.batch, args.test_set, args.test_from)
    results, cards = {}, {}
    for seed in range(args.seeds):
        for selector in args.selectors:
            node = loop(code, args.tag, selector, seed, args.iterations, args.batch, run=not args.no_run,
                        sampling={'starts': args.starts, 'ensemble': args.ensemble, 'temperatures': args.temperatures},
                        uncertainty=args.uncertainty)
            if node is not None:
                results.setdefault(selector, {})[seed] = curve(code, node, reference)
                if args.card:
                    cards.setdefault(selector, {})[seed] = card(code, node, args.tag, reference)
    print(f'\nindependent test set: TrainingSet<{reference.pk}>, {len(reference)} frames; thresholds '
          f'{THRESHOLDS["energy_meV_per_fu"]} meV/f.u., {THRESHOLDS["forces_meV_per_A"]} meV/Å; '
          f'{args.iterations} iterations of {args.batch} labels after 6 seed labels ({" ".join(args.starts)}), '
          f'{args.ensemble} sampling; uncertainty score: {args.uncertainty}')
    print(f'{"selector":<17}{"labels to thresholds":>22}{"reached":>9}{"final E (meV/fu)":>19}{"final F (meV/Å)":>18}'
          f'{"  final labels":>15}')
    for selector, runs in results.items():
        needed = np.array([labels_to_thresholds(rows) for rows in runs.values()])
        finals = np.array([[rows[-1]['energy'], rows[-1]['forces']] for rows in runs.values() if rows])
        reached = np.isfinite(needed)
        spread = f'{np.mean(needed[reached]):.1f} ± {np.std(needed[reached]):.1f}' if reached.any() else 'never'
        labels = sorted({rows[-1]['labels'] for rows in runs.values() if rows})
        print(f'{selector:<17}{spread:>22}{f"{reached.sum()}/{len(needed)}":>9}'
              f'{np.mean(finals[:, 0]):>12.2f} ± {np.std(finals[:, 0]):<5.2f}'
              f'{np.mean(finals[:, 1]):>11.0f} ± {np.std(finals[:, 1]):<4.0f}{"/".join(map(str, labels)):>15}')
    if 'random' in results:
        # the ratio where no selector reaches the thresholds: labels to reach the error `random` ends with
        print('\nlabels to reach random\'s final mean test-set error (seeds\' mean curve, linear between counts):')
        for key, unit in (('forces', 'meV/Å'), ('energy', 'meV/f.u.')):
            level = mean_curve(results['random'], key)[1][-1]
            needed = {selector: labels_to_reach(runs, key, level) for selector, runs in results.items()}
            print(f'  {key} ({level:.1f} {unit}): ' + ', '.join(
                f'{selector} {value:.1f} (random/{selector} = {needed["random"] / value:.2f})'
                for selector, value in needed.items()))
        print('\nmean learning curves (labels: force RMSE meV/Å / energy RMSE meV/f.u.):')
        for selector, runs in results.items():
            labels, forces = mean_curve(runs, 'forces')
            energies = mean_curve(runs, 'energy')[1]
            print(f'  {selector:<16}' + '  '.join(f'{n}: {f:.0f}/{e:.1f}' for n, f, e in zip(labels, forces, energies)))
    if cards:
        print("\nthe physics card (`fast`) of each run's final potential: items passed per seed, and what failed:")
        for selector, runs in cards.items():
            print(f'  {selector:<16}' + '   '.join(
                f'seed {seed}: {c["passed"]}/{c["items"]} ({", ".join(c["failed"]) or "green"}; card {c["pk"]})'
                for seed, c in sorted(runs.items())))
    plot(results, args.plot)
    print(f'plot: {args.plot}')
    if args.json:
        with open(args.json, 'w') as handle:
            json.dump(results, handle, indent=1)


if __name__ == '__main__':
    main()
