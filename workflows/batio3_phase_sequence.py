"""Finite-temperature phase sequence (BaTiO3-GAP paper, Figs. 1, 5, 6): NST MD of a BaTiO3 supercell at several temperatures
with a potential; lattice parameters, polarization, R/O/T/C per temperature and the transition temperatures.

    verdi run workflows/batio3_phase_sequence.py --potential PK [--protocol fast|batio3_gap] [--supercell 4]
        [--temperatures 15 50 100 ...] [--steps N] [--stride N] [--exchange] [--clients N] [--save plot.png]
"""

import argparse

from aiida import orm

from aiida_ferromlip.codes import add_code_options, codes_from_arguments
from aiida_ferromlip.workflows.benchmarks.common import add_md_options, md_overrides, run_reusing_md
from aiida_ferromlip.workflows.benchmarks.phase_sequence import PhaseSequenceWorkChain


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--potential', type=int, required=True)
    parser.add_argument('--protocol', default='batio3_gap')
    parser.add_argument('--start-phase', default=None, choices=('R3m', 'Amm2', 'P4mm', 'Pm-3m'))
    add_md_options(parser)
    parser.add_argument('--exchange', action='store_true', help='replica exchange between the temperatures')
    parser.add_argument('--save', default=None)
    add_code_options(parser, 'md')
    args = parser.parse_args()
    codes = codes_from_arguments(parser, args, 'md')

    overrides = md_overrides(args)
    overrides['sample']['parameters']['exchange'] = args.exchange
    if args.start_phase:
        overrides['start_phase'] = args.start_phase
    builder = PhaseSequenceWorkChain.get_builder_from_protocol(codes['md'],
                                                               orm.load_node(args.potential), protocol=args.protocol,
                                                               overrides=overrides)
    results, node = run_reusing_md(builder, args.reuse_md)
    if not node.is_finished_ok:
        print(f'PhaseSequenceWorkChain<{node.pk}> failed: [{node.exit_status}] {node.exit_message}')
        return
    summary = results['summary'].get_dict()
    md_node = node.called[0] if node.called else None
    wall = md_node.outputs.statistics['wall_time_s'] if md_node else float('nan')
    print(f'\nPhaseSequenceWorkChain<{node.pk}>: {summary["atoms"]} atoms, potential {args.potential}, '
          f'MD wall time {wall:.0f} s')
    print(f'polarization from {summary["polarization_from"]}')
    print('   T (K)  phase  frames  sorted |P| (C/m2)       sorted a (A)              angles (deg)          T_kin (K)')
    for row in summary['temperatures']:
        if row['phase'] == 'broken':
            print(f'{row["temperature_K"]:8.0f}  broken: the perovskite network was lost in {row["broken_frames"]} of '
                  f'{row["frames_analysed"]} analysed frames')
            continue
        p = ' '.join(f'{x:.3f}' for x in row['sorted_abs_polarization_c_m2'])
        a = ' '.join(f'{x:.4f}' for x in row['lattice_A'])
        g = ' '.join(f'{x:.2f}' for x in row['angles_deg'])
        print(f'{row["temperature_K"]:8.0f}  {row["phase"]:5s}  {row["frames_analysed"]:6d}  {p:22s}  {a:24s}  {g:22s}'
              f'{row["mean_kinetic_temperature_K"]:8.0f}')
    for transition in summary['transitions']:
        low, high = transition['between_K']
        print(f'transition {transition["from"]} -> {transition["to"]} at {transition["temperature_K"]:.0f} K '
              f'(between {low:.0f} and {high:.0f} K)')
    if args.save:
        with open(args.save, 'wb') as handle:
            handle.write(results['plot'].get_content('rb'))


if __name__ == '__main__':
    main()
