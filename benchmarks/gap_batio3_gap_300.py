"""Benchmark: fit the `batio3_gap` GAP preset on 300 reference-labelled 40-atom BaTiO3 frames, through the CalcJob.

    verdi run benchmarks/gap_batio3_gap_300.py [--frames 300] [--max-memory-gb 16]

Frames: the four BaTiO3 phases (R3m, Amm2, P4mm, Pm-3m; 2x2x2 = 40 atoms), each rattled (σ 0.08 Å) and strained
(σ 1 %), labelled by SevenNet-0 through the LabelWorkChain. Prints wall time, peak RSS, gap_fit's own memory
estimate, the memory plan (share of frames that kept their virial), and the validation RMSE/MAE (10 % held out).
"""

import argparse
import time

from aiida import orm

from aiida_ferromlip.calculations.gap_fit import GapFitCalculation
from aiida_ferromlip.codes import add_code_options, codes_from_arguments
from aiida_ferromlip.launch import run_get_node
from aiida_ferromlip.materials import batio3_polymorphs, rattled_strained
from aiida_ferromlip.workflows.label.base import LabelWorkChain


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--frames', type=int, default=300)
    parser.add_argument('--max-memory-gb', type=float, default=16)
    parser.add_argument('--training-set', type=int, default=None, help='pk of an existing TrainingSet to reuse')
    add_code_options(parser, 'label', 'gap')
    args = parser.parse_args()
    codes = codes_from_arguments(parser, args, 'label', 'gap')

    start = time.perf_counter()
    if args.training_set:
        training_set = orm.load_node(args.training_set)
    else:
        frames = []
        phases = batio3_polymorphs()
        for index, atoms in enumerate(phases.values()):
            frames += rattled_strained(atoms, args.frames // len(phases), rattle=0.08, strain=0.01, seed=index)
        structures = {f'frame_{i:04d}': orm.StructureData(ase=a) for i, a in enumerate(frames)}
        builder = LabelWorkChain.get_builder_from_protocol(codes['label'], structures,
                                                           protocol='fast')
        results, _ = run_get_node(builder)
        training_set = results['training_set']
    label_time = time.perf_counter() - start
    print(f'TrainingSet<{training_set.pk}>: {len(training_set)} frames ({label_time:.0f} s to build)')

    builder = GapFitCalculation.get_builder_from_protocol(
        codes['gap'], training_set, protocol='batio3_gap',
        overrides={'parameters': {'max_memory_gb': args.max_memory_gb}})
    start = time.perf_counter()
    results, node = run_get_node(builder)
    wall = time.perf_counter() - start
    print(f'GapFitCalculation<{node.pk}>: exit status {node.exit_status} {node.exit_message or ""}')
    report = results['fit_report'].get_dict()
    plan = report.get('memory_plan', {})
    print(f'wall time (whole CalcJob): {wall:.0f} s; gap_fit alone: {report.get("fit_wall_time_s", float("nan")):.0f} s; '
          f'FPS: {report.get("fps_time_s", float("nan")):.1f} s')
    print(f'peak RSS of gap_fit: {report.get("peak_rss_bytes", 0) / 1024**3:.2f} GiB; '
          f'gap_fit estimate: {plan.get("estimated_peak_bytes", 0) / 1024**3:.2f} GiB '
          f'(all virials: {plan.get("estimate_all_virials_bytes", plan.get("estimated_peak_bytes", 0)) / 1024**3:.2f} GiB); '
          f'budget {plan.get("budget_bytes", 0) / 1024**3:.0f} GiB; frames keeping virials: {plan.get("virial_fraction")}')
    if 'metrics' in results:
        m = results['metrics'].get_dict()
        print(f'validation ({m["num_frames"]} frames): energy RMSE {m["energy_per_fu_meV_rmse"]:.2f} meV/f.u. '
              f'({m["energy_per_atom_meV_rmse"]:.2f} meV/atom), forces RMSE {m["forces_meV_per_A_rmse"]:.0f} meV/Å '
              f'(MAE {m["forces_meV_per_A_mae"]:.0f}), stress RMSE {m["stress_kbar_rmse"]:.2f} kbar')


if __name__ == '__main__':
    main()
