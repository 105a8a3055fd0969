"""``PolymorphRankingWorkChain``: relax polymorphs with a potential and with the reference model, and tabulate their
energies relative to a chosen phase and their lattice parameters (seed 000 Tables I and II).

Each polymorph keeps its space group while it relaxes (ASE's ``FixSymmetry``: without it a metastable polymorph
such as Amm2 BaTiO3 slides into the ground state and the ranking says nothing), cell and positions together
(``FrechetCellFilter``). A relaxation that does not converge is reported in its row; the rest of the table is
still produced. The reference side is the reference labeller's model (SevenNet-0) relaxed the same way.
"""

from __future__ import annotations

import csv
import io

import numpy as np
from aiida import orm
from aiida.engine import WorkChain, calcfunction

from aiida_ferromlip.analysis.plots import figure_png
from aiida_ferromlip.data.potential import POTENTIAL_TYPES
from aiida_ferromlip.data.training_set import formula_units
from aiida_ferromlip.workflows.benchmarks.common import merged_settings

DEFAULTS = {'fmax': 0.01, 'max_steps': 400, 'relax_cell': True, 'reference_phase': None, 'symprec': 1e-3}


def ranking_parameters(parameters: orm.Dict | None) -> dict:
    return merged_settings(parameters, DEFAULTS, 'polymorph ranking')


def relax(atoms, calculator, fmax: float, max_steps: int, relax_cell: bool, symprec: float) -> dict:
    """Relax ``atoms`` in its space group; energy per formula unit (eV), lattice parameters, convergence."""
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    atoms = atoms.copy()
    atoms.calc = calculator
    atoms.set_constraint(FixSymmetry(atoms, symprec=symprec))
    target = FrechetCellFilter(atoms) if relax_cell else atoms
    optimizer = BFGS(target, logfile=None)
    converged = bool(optimizer.run(fmax=fmax, steps=max_steps))
    return {'energy_per_fu_eV': float(atoms.get_potential_energy() / formula_units(atoms)),
            'cell_lengths': [float(x) for x in atoms.cell.cellpar()[:3]],
            'cell_angles': [float(x) for x in atoms.cell.cellpar()[3:]],
            'volume_per_fu': float(atoms.get_volume() / formula_units(atoms)),
            'converged': converged, 'steps': int(optimizer.nsteps)}


def validate_inputs(inputs, _):
    if 'potential' not in inputs:
        return None
    try:
        settings = ranking_parameters(inputs.get('parameters'))
    except ValueError as exception:
        return str(exception)
    structures = inputs.get('structures', {})
    if len(structures) < 2:
        return 'a ranking needs at least two polymorphs'
    if settings['reference_phase'] is not None and settings['reference_phase'] not in structures:
        return f'reference_phase `{settings["reference_phase"]}` is not one of the structures {sorted(structures)}'
    species = set(inputs['potential'].species)
    for key, structure in structures.items():
        missing = sorted(set(structure.get_ase().get_chemical_symbols()) - species)
        if missing:
            return f'polymorph `{key}` has {", ".join(missing)}, which the potential does not know'
    return None


@calcfunction
def rank_polymorphs(potential: orm.SinglefileData, reference_model: orm.Str, parameters: orm.Dict,
                    **structures: orm.StructureData) -> dict:
    """Relax every polymorph with the potential and the reference model; the table, CSV and bar chart."""
    from aiida_ferromlip.engines.reference import make_calculator

    settings = ranking_parameters(parameters)
    names = sorted(structures)
    calculators = {'potential': potential.calculator(), 'reference': make_calculator(reference_model.value)}
    rows = {name: {side: relax(structures[name].get_ase(), calculator, settings['fmax'], settings['max_steps'],
                               settings['relax_cell'], settings['symprec'])
                   for side, calculator in calculators.items()} for name in names}
    zero = settings['reference_phase'] or min(names, key=lambda n: rows[n]['reference']['energy_per_fu_eV'])
    table = []
    for name in names:
        row = {'polymorph': name}
        for side in ('reference', 'potential'):
            relative = 1000 * (rows[name][side]['energy_per_fu_eV'] - rows[zero][side]['energy_per_fu_eV'])
            row[f'{side}_meV_per_fu'] = relative
            row[f'{side}_cell_lengths'] = rows[name][side]['cell_lengths']
            row[f'{side}_converged'] = rows[name][side]['converged']
        row['deviation_meV_per_fu'] = row['potential_meV_per_fu'] - row['reference_meV_per_fu']
        row['lattice_deviation_percent'] = [100 * (p - r) / r for p, r in
                                            zip(row['potential_cell_lengths'], row['reference_cell_lengths'])]
        table.append(row)
    order = {side: sorted(names, key=lambda n, s=side: rows[n][s]['energy_per_fu_eV']) for side in calculators}
    summary = {'zero': zero, 'rows': table, 'order_reference': order['reference'], 'order_potential': order['potential'],
               'same_order': order['reference'] == order['potential'],
               'not_converged': [f'{r["polymorph"]} ({side})' for r in table for side in ('reference', 'potential')
                                 if not r[f'{side}_converged']],
               'markdown': _markdown(table, zero)}
    return {'table': orm.Dict(summary),
            'csv': orm.SinglefileData(io.BytesIO(_csv(table).encode()), filename='polymorphs.csv'),
            'plot': orm.SinglefileData(io.BytesIO(_bar_chart(table, zero)), filename='polymorphs.png')}


def _markdown(table: list[dict], zero: str) -> str:
    lines = [f'| polymorph | reference (meV/f.u.) | potential (meV/f.u.) | deviation | a, b, c reference (Å) | '
             f'a, b, c deviation (%) |', '|---|---|---|---|---|---|']
    for row in table:
        flags = '' if row['reference_converged'] and row['potential_converged'] else ' (not converged)'
        lines.append(f'| {row["polymorph"]}{flags} | {row["reference_meV_per_fu"]:+.1f} | '
                     f'{row["potential_meV_per_fu"]:+.1f} | {row["deviation_meV_per_fu"]:+.1f} | '
                     + ', '.join(f'{x:.3f}' for x in row['reference_cell_lengths']) + ' | '
                     + ', '.join(f'{x:+.2f}' for x in row['lattice_deviation_percent']) + ' |')
    lines.append(f'\nEnergies relative to {zero}.')
    return '\n'.join(lines)


def _csv(table: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(['polymorph', 'reference_meV_per_fu', 'potential_meV_per_fu', 'deviation_meV_per_fu',
                     'reference_a', 'reference_b', 'reference_c', 'potential_a', 'potential_b', 'potential_c',
                     'reference_converged', 'potential_converged'])
    for row in table:
        writer.writerow([row['polymorph'], row['reference_meV_per_fu'], row['potential_meV_per_fu'],
                         row['deviation_meV_per_fu'], *row['reference_cell_lengths'], *row['potential_cell_lengths'],
                         row['reference_converged'], row['potential_converged']])
    return buffer.getvalue()


def _bar_chart(table: list[dict], zero: str) -> bytes:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    names = [row['polymorph'] for row in table]
    x = np.arange(len(names))
    figure, axis = plt.subplots(figsize=(max(4, 1.2 * len(names)), 3.4))
    axis.bar(x - 0.2, [row['reference_meV_per_fu'] for row in table], 0.4, label='reference', color='0.3')
    axis.bar(x + 0.2, [row['potential_meV_per_fu'] for row in table], 0.4, label='potential', color='tab:red')
    axis.set_xticks(x)
    axis.set_xticklabels(names)
    axis.set_ylabel(f'E - E({zero}) (meV/f.u.)')
    axis.axhline(0, color='0.5', lw=0.5)
    axis.legend(fontsize=8)
    return figure_png(figure, dpi=100)


class PolymorphRankingWorkChain(WorkChain):
    """Polymorph energies and lattice parameters with a potential against the reference model."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('potential', valid_type=POTENTIAL_TYPES, help='The potential to judge.')
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True,
                             help='The polymorphs, by name (e.g. the builders of aiida_ferromlip.materials).')
        spec.input('reference_model', valid_type=orm.Str, default=lambda: orm.Str('7net-0'),
                   help='The reference labeller model the potential is compared with.')
        spec.input('parameters', valid_type=orm.Dict, required=False, help=f'Settings: {sorted(DEFAULTS)}.')
        spec.inputs.validator = validate_inputs
        spec.outline(cls.rank)
        spec.output('table', valid_type=orm.Dict, help='Rows per polymorph, orders, non-converged relaxations, Markdown.')
        spec.output('csv', valid_type=orm.SinglefileData, help='The table as CSV.')
        spec.output('plot', valid_type=orm.SinglefileData, help='Bar chart of the relative energies (PNG).')

    def rank(self):
        results = rank_polymorphs(self.inputs.potential, self.inputs.reference_model,
                                  self.inputs.get('parameters', orm.Dict(DEFAULTS)), **self.inputs.structures)
        for key in ('table', 'csv', 'plot'):
            self.out(key, results[key])
        table = results['table'].get_dict()
        for failed in table['not_converged']:
            self.report(f'relaxation of {failed} did not converge: its row is kept and flagged')
        self.report(f'order (reference): {" < ".join(table["order_reference"])}; '
                    f'order (potential): {" < ".join(table["order_potential"])}')
