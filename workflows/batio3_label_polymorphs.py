"""Demo: label BaTiO3's R3m, Amm2, P4mm and Pm-3m phases (40-atom cells) with the reference labeller.

    verdi run workflows/batio3_label_polymorphs.py [--protocol fast] [--label-code CODE]

Prints the TrainingSet's pk, the energies per formula unit relative to the cubic phase, and a provenance
summary: the labelling calculation behind every frame, found by walking the graph.
"""

import argparse

import numpy as np
from aiida import orm

from aiida_ferromlip.codes import add_code_options, codes_from_arguments
from aiida_ferromlip.launch import run_get_node
from aiida_ferromlip.materials import batio3_polymorphs
from aiida_ferromlip.provenance import frame_origins_summary, labelling_calculations
from aiida_ferromlip.workflows.label.base import LabelWorkChain


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--protocol', default='fast')
    add_code_options(parser, 'label')
    args = parser.parse_args()
    codes = codes_from_arguments(parser, args, 'label')

    phases = batio3_polymorphs(supercell=(2, 2, 2))
    structures = {phase.replace('-', '_'): orm.StructureData(ase=atoms) for phase, atoms in phases.items()}
    builder = LabelWorkChain.get_builder_from_protocol(codes['label'], structures, protocol=args.protocol)
    results, node = run_get_node(builder)
    if not node.is_finished_ok:
        raise SystemExit(f'LabelWorkChain<{node.pk}> failed: [{node.exit_status}] {node.exit_message}')

    training_set = results['training_set']
    print(f'\nLabelWorkChain<{node.pk}> finished: TrainingSet<{training_set.pk}> with {len(training_set)} frames '
          f'of {", ".join(training_set.species)} labelled by {", ".join(training_set.base.attributes.get("labellers"))}')

    energies = training_set.energies / training_set.formula_units()
    keys = [origin['frame_key'] for origin in training_set.origins]
    reference = energies[keys.index('Pm_3m')]
    print('\n  phase    E - E(Pm-3m) [meV/f.u.]   max |F| [eV/Å]')
    for index, (key, energy) in enumerate(zip(keys, energies)):
        frame = training_set.get_frame(index)
        print(f'  {key:8s} {1000 * (energy - reference):+12.1f}          {np.abs(frame.get_forces()).max():8.3f}')

    calcs = labelling_calculations(training_set)
    print('\nProvenance (QueryBuilder from the TrainingSet back to its labelling calculations):')
    for calc in calcs:
        print(f'  {calc.process_label}<{calc.pk}> on {calc.computer.label}, code {calc.inputs.code.full_label}, '
              f'exit status {calc.exit_status}, {len(calc.inputs.structures)} input structure(s)')
    print(f'  frames per labelling process (from the frame origins): {frame_origins_summary(training_set)}')
    failed = results['failed_frames'].get_dict()
    print(f'  frames left out: {failed or "none"}; cost: {results["cost"]["wall_time_per_frame_s"]:.2f} s/frame')
    print(f'\nInspect: verdi process report {node.pk}   |   verdi node graph generate {training_set.pk}')


if __name__ == '__main__':
    main()
