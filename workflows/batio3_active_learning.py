"""Demo: grow a GAP for BaTiO3 by active learning (label -> fit -> sample -> select), from its four polymorphs.

    verdi run workflows/batio3_active_learning.py [--protocol fast|minimalist|batio3_gap] [--max-iterations N]
                                                  [--labeller reference|qe] [--material BaTiO3|BiFeO3|PbZrO3|HfO2]
                                                  [--card|--no-card] [--label-protocol P] [--card-reference PK]

`--material` starts the same loop from another material's training polymorphs (minimalist paper: R3c + Pnma for
BiFeO3 and PbZrO3, P2_1/c + P4_2/nmc for HfO2) with the reference labeller.

With the reference labeller (SevenNet-0) and the `fast` protocol this takes minutes on two cores. With
`--labeller qe` the same loop runs on real DFT (pw.x, PBEsol, the `fast` QE settings of the label protocol) in
5-atom cells of the four polymorphs. Prints the out-of-sample learning curve, why the loop stopped, and the
provenance from the final potential back to every labelling calculation.
"""

import argparse

from aiida import orm

from aiida_ferromlip.codes import add_code_options, codes_from_arguments
from aiida_ferromlip.launch import run_get_node
from aiida_ferromlip.materials import MATERIALS, batio3_polymorphs
from aiida_ferromlip.provenance import labelling_calculations
from aiida_ferromlip.workflows.loop.active_learning import ActiveLearningWorkChain
from aiida_ferromlip.workflows.loop.after_loop import loop_overview


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--protocol', default='fast')
    parser.add_argument('--max-iterations', type=int, default=None)
    parser.add_argument('--labeller', choices=('reference', 'qe'), default='reference')
    parser.add_argument('--material', choices=sorted(MATERIALS), default='BaTiO3')
    parser.add_argument('--card', action=argparse.BooleanOptionalAction, default=None,
                        help='Judge every potential with the physics card (default: on with the reference labeller, '
                             'off with --labeller qe, whose `fast` settings cannot carry it: docs/physics_card.md); '
                             '--no-card converges on out-of-sample errors alone.')
    parser.add_argument('--label-protocol', default=None,
                        help="The labels' protocol (default: the loop protocol's); with --labeller qe --card, "
                             '`five_atom` gives the card labels it can use (family cutoffs, one 4x4x4 mesh).')
    parser.add_argument('--card-reference', type=int, default=None, metavar='PK',
                        help="the labeller's side of an earlier card with the same labeller (a `reference_values` Dict, "
                             'e.g. of a stopped loop\'s `card_labeller`): the loop starts from it, nothing of it is '
                             'labelled again')
    add_code_options(parser, 'label', 'gap', 'md', 'task', 'pw')
    args = parser.parse_args()
    codes = codes_from_arguments(parser, args, 'label', 'gap', 'md', 'task', 'pw')
    if args.labeller == 'qe' and args.material != 'BaTiO3':
        parser.error('--labeller qe runs the 5-atom BaTiO3 demo; other materials use the reference labeller here')

    overrides = {'parameters': {'max_iterations': args.max_iterations}} if args.max_iterations else {}
    structures, material = None, args.material
    if args.labeller == 'qe':
        # Real DFT on a laptop: the polymorphs in their 5-atom cells. The GAP's cutoff then exceeds half the cell
        # height (atoms see their periodic images), which is physical here and must be allowed explicitly.
        structures = {phase.replace('-', '_'): orm.StructureData(ase=atoms)
                      for phase, atoms in batio3_polymorphs(supercell=(1, 1, 1)).items()}
        material = None
        overrides['fit'] = {'gap': {'overrides': {'parameters': {'clip_sparse': True, 'allow_large_cutoff': True}}}}
        # ... and, with --card, the physics card in the same 5-atom cells (paths, Γ soft modes, test set). Off by
        # default: at the `fast` QE cutoffs the labels' E(V) is not smooth and pw.x relaxations follow the Pulay
        # stress (measured, docs/physics_card.md), so the card's labeller side cannot be computed from them.
        overrides['card'] = {'protocol': 'five_atom'}
    if args.label_protocol:
        overrides['label'] = {'protocol': args.label_protocol}
    # (HfO2's thin training cells: the loop protocol's `material_inputs` allow the large cutoff)
    # The physics card (EOS, polymorphs, double wells, soft modes, independent test set, MD stability) judges every
    # potential against the labeller; the card knows BaTiO3's parent phase and paths.
    card = args.card if args.card is not None else args.labeller != 'qe'
    task_code = codes['task'] if args.material == 'BaTiO3' and card else None
    builder = ActiveLearningWorkChain.get_builder_from_protocol(
        codes['pw' if args.labeller == 'qe' else 'label'], codes['gap'], codes['md'],
        material=material, structures=structures, protocol=args.protocol, overrides=overrides or None,
        engine=args.labeller, task_code=task_code)
    if args.card_reference is not None:
        if task_code is None:
            parser.error('--card-reference needs the physics card (--card)')
        builder.card.reference_values = orm.load_node(args.card_reference)
    results, node = run_get_node(builder)
    if 'summary' not in results:
        print(f'\nActiveLearningWorkChain<{node.pk}> failed: [{node.exit_status}] {node.exit_message}; see '
              f'`verdi process report {node.pk}`')
        raise SystemExit(1)
    summary = results['summary'].get_dict()

    print(f'\nActiveLearningWorkChain<{node.pk}>: exit status {node.exit_status} — {summary["stop_reason"]}')
    print('\n iteration  training frames  sampled  selected  E RMSE (meV/f.u.)  F RMSE (meV/Å)  card    decision')
    for row in summary['iterations']:
        card = f'{row["card_items_passed"]}/{row["card_items"]}' if 'card_items' in row else '-'
        print(f' {row["iteration"]:9d}  {row.get("training_frames", 0):15d}  {row["sampled"]:7d}'
              f'  {row["selected"]:8d}  {row.get("energy_per_fu_meV_rmse", float("nan")):17.2f}'
              f'  {row.get("forces_meV_per_A_rmse", float("nan")):14.0f}  {card:6s}  '
              f'{"final potential" if row.get("final") else row.get("decision", "")}')
    if 'card' in results:
        print(f'\nPhysics card of the final potential (PNG: SinglefileData<{results["card_plot"].pk}>):\n')
        print(results['card']['markdown'])
    training_set = results['training_set']
    calcs = labelling_calculations(training_set)
    potential = results['potential']
    # `ferromlip loop show`'s overview says whether the potential was fitted on fewer frames than the loop labelled
    fitted_on = loop_overview(node).get('potential_training_set', {'pk': training_set.pk, 'frames': len(training_set)})
    print(f'\nFinal potential: {potential.__class__.__name__}<{potential.pk}> fitted on TrainingSet<{fitted_on["pk"]}> '
          f'({fitted_on["frames"]} frames)' + ('' if fitted_on['pk'] == training_set.pk else
                                              f'; the loop\'s TrainingSet<{training_set.pk}> adds the last batch, '
                                              f'which measured its out-of-sample errors') +
          f' ({len(training_set)} frames, {summary["num_labels"]} labels made)')
    print(f'Provenance: the final TrainingSet leads back to {len(calcs)} labelling calculations '
          f'({", ".join(sorted({c.process_label for c in calcs}))}); every frame origin names one of them: '
          f'{ {o["process_uuid"] for o in training_set.origins} <= {c.uuid for c in calcs} }')
    if 'learning_curve_plot' in results:
        print(f'Learning curve: SinglefileData<{results["learning_curve_plot"].pk}> (PNG), '
              f'ArrayData<{results["learning_curve"].pk}>')
    print(f'Lab notebook: verdi process report {node.pk}')
    print(f'Next: `ferromlip loop show {node.pk}`, `ferromlip potential export {results["potential"].pk} DIR`, '
          f'`ferromlip loop continue {node.pk} --max-labels N` (README: "After the demo")')
    if node.exit_status != 0:  # not converged (budget spent, card items failing): the potential is not validated
        print(f'\nNot converged: exit status {node.exit_status} ({node.exit_message})')
        raise SystemExit(1)


if __name__ == '__main__':
    main()
