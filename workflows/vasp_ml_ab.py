"""Bring your VASP on-the-fly data: an ML_AB (or ML_ABN) file -> TrainingSet -> a GAP and an Allegro model.

    verdi run workflows/vasp_ml_ab.py ML_AB [--gap-protocol fast] [--nequip-protocol fast] [--epochs N]
    verdi run workflows/vasp_ml_ab.py --write-example ML_AB_example [--frames 24]

The first form imports the file through the ``training_set_from_ml_ab`` calcfunction (the file is a node, every
frame's origin names it and the configuration's number) and fits both models on the same split. The second writes
an example ML_AB in VASP's layout from frames labelled by the reference labeller (no VASP here), to try the first.
"""

import argparse

from aiida import orm

from aiida_ferromlip.calculations.gap_fit import GapFitCalculation
from aiida_ferromlip.calculations.nequip_train import NequipTrainCalculation
from aiida_ferromlip.codes import add_code_options, codes_from_arguments
from aiida_ferromlip.data.ml_ab import training_set_from_ml_ab, write_ml_ab
from aiida_ferromlip.launch import run_get_node


def write_example(path: str, num_frames: int, code) -> None:
    from aiida_ferromlip.materials import batio3_polymorphs, rattled_strained
    from aiida_ferromlip.workflows.label.base import LabelWorkChain

    structures = {}
    for index, (phase, atoms) in enumerate(batio3_polymorphs().items()):
        for j, frame in enumerate(rattled_strained(atoms, max(1, num_frames // 4), rattle=0.06, seed=index)):
            structures[f'{phase.replace("-", "_")}_{j:03d}'] = orm.StructureData(ase=frame)
    builder = LabelWorkChain.get_builder_from_protocol(code, structures,
                                                       protocol='fast')
    results, _ = run_get_node(builder)
    training_set = results['training_set']
    with open(path, 'w') as handle:
        handle.write(write_ml_ab(training_set.get_frames(range(len(training_set))), system_name='BaTiO3'))
    print(f'wrote {path}: {len(training_set)} configurations labelled by the reference labeller '
          f'(TrainingSet<{training_set.pk}>)')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('ml_ab', nargs='?')
    parser.add_argument('--write-example', metavar='PATH')
    parser.add_argument('--frames', type=int, default=24)
    parser.add_argument('--gap-protocol', default='fast')
    parser.add_argument('--nequip-protocol', default='fast')
    parser.add_argument('--epochs', type=int, default=None)
    add_code_options(parser, 'label', 'gap', 'nequip')
    args = parser.parse_args()
    codes = codes_from_arguments(parser, args, 'label', 'gap', 'nequip')
    if args.write_example:
        write_example(args.write_example, args.frames, codes['label'])
        return
    if not args.ml_ab:
        parser.error('give an ML_AB file (or --write-example PATH)')

    ml_ab = orm.SinglefileData(args.ml_ab, filename='ML_AB').store()
    training_set, node = training_set_from_ml_ab.run_get_node(ml_ab)
    print(f'SinglefileData<{ml_ab.pk}> -> {node.process_label}<{node.pk}> -> TrainingSet<{training_set.pk}>: '
          f'{len(training_set)} frames, species {", ".join(training_set.base.attributes.get("species"))}')

    gap = GapFitCalculation.get_builder_from_protocol(codes['gap'], training_set,
                                                      protocol=args.gap_protocol)
    nequip = NequipTrainCalculation.get_builder_from_protocol(
        codes['nequip'], training_set, protocol=args.nequip_protocol,
        overrides={'parameters': {'validation_fraction': gap.parameters['validation_fraction'],
                                  'seed': gap.parameters['seed']},
                   **({'training': {'max_epochs': args.epochs}} if args.epochs else {})})
    print('\n model    job     potential  E RMSE (meV/f.u.)  F RMSE (meV/Å)  S RMSE (kbar)   (validation frames)')
    for name, builder in (('GAP', gap), ('Allegro', nequip)):
        results, calc = run_get_node(builder)
        if not calc.is_finished_ok:
            print(f' {name}: {calc.process_label}<{calc.pk}> failed: [{calc.exit_status}] {calc.exit_message}')
            continue
        metrics = results['metrics'].get_dict()
        print(f' {name:8s} {calc.pk:5d} {results["potential"].pk:10d} {metrics["energy_per_fu_meV_rmse"]:18.2f}'
              f' {metrics["forces_meV_per_A_rmse"]:15.0f} {metrics["stress_kbar_rmse"]:14.2f}   ({metrics["num_frames"]})')


if __name__ == '__main__':
    main()
