"""Static and frequency-dependent dielectric response of BaTiO3 from MD with a potential and a polarization model
(BaTiO3-GAP paper, Sec. 2.5).

    verdi run workflows/batio3_dielectric.py --potential PK --polarization-model PK [--protocol fast|batio3_gap]
        [--supercell 3] [--temperatures 200 300 ...] [--steps N] [--stride N] [--curie-weiss-from 200]
        [--clients 2] [--save plot.png]
"""

import argparse

from aiida import orm

from aiida_ferromlip.codes import add_code_options, codes_from_arguments
from aiida_ferromlip.workflows.benchmarks.common import add_md_options, md_overrides, run_reusing_md
from aiida_ferromlip.workflows.benchmarks.dielectric import DielectricResponseWorkChain


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--potential', type=int, required=True)
    parser.add_argument('--polarization-model', type=int, required=True)
    parser.add_argument('--protocol', default='batio3_gap')
    add_md_options(parser)
    parser.add_argument('--curie-weiss-from', type=float, default=None)
    parser.add_argument('--save', default=None)
    add_code_options(parser, 'md')
    args = parser.parse_args()
    codes = codes_from_arguments(parser, args, 'md')
    overrides = {**md_overrides(args), 'analysis': {'curie_weiss_from_K': args.curie_weiss_from}}
    builder = DielectricResponseWorkChain.get_builder_from_protocol(
        codes['md'], orm.load_node(args.potential), orm.load_node(args.polarization_model),
        protocol=args.protocol, overrides=overrides)
    results, node = run_reusing_md(builder, args.reuse_md)
    if not node.is_finished_ok:
        print(f'DielectricResponseWorkChain<{node.pk}> failed: [{node.exit_status}] {node.exit_message}')
        return
    summary = results['summary'].get_dict()
    print(f'\nDielectricResponseWorkChain<{node.pk}>: {summary["atoms"]} atoms, dipoles from {summary["dipoles_from"]}')
    print('   T (K)  frames  eps (trace/3)   principal values          |<M>| (e·Å)')
    for row in summary['temperatures']:
        if 'broken_frames' in row:
            print(f'{row["temperature_K"]:8.0f}  the crystal collapsed in {row["broken_frames"]} of {row["frames"]} frames:'
                  f' left out')
            continue
        principal = ' '.join(f'{e:8.1f}' for e in row['eps_principal'])
        mean = sum(x * x for x in row['mean_dipole_e_A']) ** 0.5
        print(f'{row["temperature_K"]:8.0f}  {row["frames"]:6d}  {row["eps_isotropic"]:13.1f}   {principal}   {mean:8.2f}')
    if 'curie_weiss' in summary:
        fit = summary['curie_weiss']
        print(f'Curie-Weiss above {args.curie_weiss_from} K: C = {fit["C_K"]:.0f} ± {fit["C_K_error"]:.0f} K, '
              f'Tc = {fit["Tc_K"]:.1f} ± {fit["Tc_K_error"]:.1f} K, eps_inf = {fit["eps_T_inf"]:.1f}')
    elif 'curie_weiss_failed' in summary:
        print(f'no Curie-Weiss fit: {summary["curie_weiss_failed"]}')
    if args.save:
        with open(args.save, 'wb') as handle:
            handle.write(results['plot'].get_content('rb'))


if __name__ == '__main__':
    main()
