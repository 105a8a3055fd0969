"""The reference labeller's own NST MD with a physics card's settings: the volumes the card's stability item compares a
potential's MD with (docs/physics_card.md, "The stability item's reference volume").

    verdi run benchmarks/labeller_md_volume.py --md PK [--model 7net-0] [--temperatures 300 450]

``--md``: the potential's MD of a card (its ``potential_md`` SampleCalculation): the same start, steps, thermostat and
barostat are run with the reference model by name through ``SampleCalculation``; printed per temperature, for both,
the final volume (mean of the last fifth of the frames) per formula unit and relative to the start.
"""

import argparse
import time

from aiida import orm

from aiida_ferromlip.analysis import physics_card as card
from aiida_ferromlip.calculations.sample import SampleCalculation
from aiida_ferromlip.launch import run_get_node
from aiida_ferromlip.materials.units import formula_units


def volumes(trajectories, atoms) -> dict:
    return {key: card.md_stability(trajectory.get_cells(), [0.0], atoms.get_volume(), formula_units(atoms))
            for key, trajectory in sorted(trajectories.items())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--md', type=int, required=True, help="a card's potential_md SampleCalculation")
    parser.add_argument('--model', default='7net-0')
    parser.add_argument('--temperatures', type=float, nargs='+', default=None,
                        help='K (default: those of the given MD at or above its top test-set temperature)')
    args = parser.parse_args()
    md = orm.load_node(args.md)
    parameters = md.inputs.parameters.get_dict()
    parameters['temperatures'] = args.temperatures or parameters['temperatures'][-2:]
    builder = SampleCalculation.get_builder()
    builder.code = md.inputs.code
    builder.potential = orm.Str(args.model)
    builder.structure = md.inputs.structure
    builder.parameters = orm.Dict(parameters)
    start = time.perf_counter()
    results, node = run_get_node(builder)
    print(f'SampleCalculation<{node.pk}> ({args.model}): exit {node.exit_status}, {time.perf_counter() - start:.0f} s')
    atoms = md.inputs.structure.get_ase()
    labeller, potential = volumes(results['trajectories'], atoms), volumes(md.outputs.trajectories, atoms)
    print('run       labeller: V/f.u. (Å³)  from start   potential: V/f.u. (Å³)  from start   potential vs labeller')
    for key, values in labeller.items():
        other = potential.get(key)
        line = f'{key}  {values["volume_per_fu"]:22.2f}  {values["volume_change_percent"]:+9.2f} %'
        if other:
            line += (f'  {other["volume_per_fu"]:22.2f}  {other["volume_change_percent"]:+9.2f} %'
                     f'  {100 * (other["volume_per_fu"] / values["volume_per_fu"] - 1):+19.2f} %')
        print(line)


if __name__ == '__main__':
    main()
