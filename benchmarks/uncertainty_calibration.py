"""Which uncertainty tells a GAP's errors: its committee's force deviation or quippy's own predictive variance?

    verdi run benchmarks/uncertainty_calibration.py --test-set PK [--committees PK ...]

The selection issue asks whether quippy's predicted variance works on our fits and which is better calibrated.
For every GAP committee (default: every ``CommitteePotential`` of GAP members in the profile: the uncertainty
selectors' fits) and every frame of an independent, labelled test set, this measures

- the true error of the committee's member 0 (the potential the loop samples with): the largest per-atom force error
  |F - F_label| and the energy error per atom;
- the committee's score: DP-GEN's maximum force deviation of the members (``CommitteeCalculator``);
- quippy's score for member 0 alone (``calc_args=local_gap_variance``: the GP's predictive variance of each atom's
  local energy): the largest per-atom standard deviation, and the frame's energy standard deviation per atom assuming
  independent atoms (sqrt of the summed variances / N).

and prints, per committee and pooled, the rank correlation (Spearman) of each score with the true error (what
decides which frames an uncertainty selector picks) and the spread of log(error / score) after one calibration factor
(what decides how well the trust levels, set as errors divided by that factor, cut the candidates): a factor-of-two
band is a log-spread of 0.69. No job is run: everything is evaluated in this process (the members are small GAPs).
"""

import argparse

import numpy as np
from aiida import orm
from scipy.stats import spearmanr

from aiida_ferromlip.data.potential import CommitteePotential, GapPotential, file_path
from aiida_ferromlip.data.training_set import TrainingSet


def gap_committees() -> list[CommitteePotential]:
    query = orm.QueryBuilder().append(CommitteePotential, project='*')
    return [node for (node,) in query.all()
            if all(isinstance(orm.load_node(uuid), GapPotential) for uuid in node.member_uuids)]


def scores(committee: CommitteePotential, frames: list) -> dict[str, np.ndarray]:
    from quippy.potential import Potential

    member = orm.load_node(committee.member_uuids[0])
    variance = Potential(param_filename=file_path(member), calc_args='local_gap_variance')
    single = member.calculator()
    mean = committee.calculator()
    rows = {'force_error': [], 'energy_error': [], 'committee_deviation': [], 'max_local_std': [], 'energy_std': []}
    for reference in frames:
        atoms = reference.copy()
        atoms.calc = single
        rows['force_error'].append(np.linalg.norm(atoms.get_forces() - reference.get_forces(), axis=1).max())
        rows['energy_error'].append(abs(atoms.get_potential_energy() - reference.get_potential_energy()) / len(atoms))
        atoms.calc = mean
        atoms.get_forces()
        rows['committee_deviation'].append(mean.results['max_force_deviation'])
        atoms.calc = variance
        atoms.get_potential_energy()
        local = np.clip(np.asarray(variance.extra_results['atoms']['local_gap_variance']), 0, None)
        rows['max_local_std'].append(np.sqrt(local.max()))
        rows['energy_std'].append(np.sqrt(local.sum()) / len(atoms))
    return {key: np.array(value) for key, value in rows.items()}


def agreement(error: np.ndarray, score: np.ndarray) -> tuple[float, float, float]:
    """Spearman rank correlation, calibration factor (median error/score) and spread of log(error/score)."""
    ratio = np.log(error / np.maximum(score, 1e-12))
    return float(spearmanr(score, error)[0]), float(np.exp(np.median(ratio))), float(np.std(ratio))


PAIRS = (('force_error', 'committee_deviation', 'max force error vs committee max force deviation'),
         ('force_error', 'max_local_std', 'max force error vs quippy max local-energy std'),
         ('energy_error', 'committee_deviation', 'energy error vs committee max force deviation'),
         ('energy_error', 'energy_std', 'energy error vs quippy energy std per atom'))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--test-set', type=int, required=True, help='a labelled TrainingSet no committee was fitted on')
    parser.add_argument('--committees', type=int, nargs='*', default=None)
    args = parser.parse_args()
    test_set = orm.load_node(args.test_set)
    if not isinstance(test_set, TrainingSet):
        parser.error(f'--test-set {args.test_set} is a {type(test_set).__name__}, not a TrainingSet')
    frames = test_set.get_frames(range(len(test_set)))
    committees = [orm.load_node(pk) for pk in args.committees] if args.committees else gap_committees()
    if not committees:
        parser.error('no CommitteePotential of GAP members in this profile: run a loop with an uncertainty selector')
    print(f'test set TrainingSet<{test_set.pk}>: {len(frames)} frames of {len(frames[0])} atoms; '
          f'{len(committees)} GAP committees')
    pooled = {}
    header = ''.join(f'{label[:34]:>36}' for _, _, label in PAIRS)
    print(f'\ncommittee (members, training frames)      Spearman rho per pair\n{"":42}{header}')
    for committee in committees:
        member = orm.load_node(committee.member_uuids[0])
        trained = len(orm.load_node(member.base.attributes.get('training_set_uuid')))
        result = scores(committee, frames)
        for key, value in result.items():
            pooled.setdefault(key, []).append(value)
        rhos = [agreement(result[e], result[s])[0] for e, s, _ in PAIRS]
        print(f'CommitteePotential<{committee.pk}> ({committee.size}, {trained:3d})'.ljust(42)
              + ''.join(f'{rho:36.2f}' for rho in rhos), flush=True)
    print('\npooled over committees and frames (calibration: error = factor x score; log-spread: std of log(error/score))')
    for error, score, label in PAIRS:
        rho, factor, spread = agreement(np.concatenate(pooled[error]), np.concatenate(pooled[score]))
        per = [agreement(e, s)[0] for e, s in zip(pooled[error], pooled[score])]
        print(f'  {label:55s} rho {rho:5.2f} (per committee {np.mean(per):.2f} ± {np.std(per):.2f}), '
              f'factor {factor:8.3g}, log-spread {spread:.2f}')


if __name__ == '__main__':
    main()
