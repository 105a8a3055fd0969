"""``PolymorphRankingWorkChain``: relax polymorphs with a potential and with the reference model, and tabulate their
energies relative to a chosen phase and their lattice parameters (minimalist paper, Tables I and II).

Each polymorph keeps its space group while it relaxes (ASE's ``FixSymmetry``: without it a metastable polymorph
such as Amm2 BaTiO3 slides into the ground state and the ranking says nothing), cell and positions together
(``FrechetCellFilter``). A relaxation that does not converge is reported in its row; the rest of the table is
still produced. The reference side is the reference labeller's model (SevenNet-0) relaxed the same way, or pw.x:
a vc-relax ``PwRelaxWorkChain`` per polymorph with the labelling settings (pw.x keeps the space group of its
input through its symmetry operations). Each side's relaxations are one ``AtomsTaskCalculation`` (a job on the
computer, not in the daemon) or the pw.x work chains, whose results a tabulating calcfunction turns into the table,
so the table's provenance shows both.
"""

from __future__ import annotations

import csv
import io

import numpy as np
from aiida import orm
from aiida.engine import WorkChain, calcfunction, if_

from aiida_ferromlip import materials
from aiida_ferromlip.analysis.plots import figure_png
from aiida_ferromlip.calculations.atoms_task import AtomsTaskCalculation
from aiida_ferromlip.data.potential import POTENTIAL_TYPES
from aiida_ferromlip.data.training_set import formula_units
from aiida_ferromlip.exit_codes import declare
from aiida_ferromlip.protocols import default_inputs, merged_settings
from aiida_ferromlip.workflows.benchmarks.common import BenchmarkProtocolMixin
from aiida_ferromlip.workflows.dft.qe import QeLabelWorkChain

PROTOCOL = 'polymorphs'  # protocols/polymorphs.yaml: the work chain's protocols and these defaults
DEFAULTS = default_inputs(PROTOCOL)['parameters']


def ranking_parameters(parameters: orm.Dict | None) -> dict:
    return merged_settings(parameters, DEFAULTS, 'polymorph ranking')


def relaxed_row(atoms, energy: float, converged: bool, steps: int) -> dict:
    """One side's row for a relaxed polymorph, whichever program relaxed it: energy per formula unit (eV), cell
    lengths and angles, volume per formula unit, convergence."""
    units = formula_units(atoms)
    return {'energy_per_fu_eV': float(energy) / units,
            'cell_lengths': [float(x) for x in atoms.cell.cellpar()[:3]],
            'cell_angles': [float(x) for x in atoms.cell.cellpar()[3:]],
            'volume_per_fu': float(atoms.get_volume() / units),
            'converged': converged, 'steps': int(steps)}


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
    if inputs.get('reference_qe', {}).get('code') is not None:
        from aiida_ferromlip.workflows.dft.qe import cell_relaxation_problems, qe_input_problems

        problem = qe_input_problems(inputs['reference_qe'], structures)
        if not problem and settings['relax_cell']:
            problem = cell_relaxation_problems(inputs['reference_qe'], structures)
        return problem
    return None


def task_rows(results: dict) -> dict:
    """Rows of the relaxed polymorphs of an ``AtomsTaskCalculation`` (task ``relax``): energy per formula unit
    (eV), cell, volume per f.u., convergence, steps, and the relaxed structure itself."""
    rows = {}
    for name, row in results['rows'].items():
        units = row['formula_units']
        rows[name] = {'energy_per_fu_eV': row['energy_eV'] / units, 'cell_lengths': row['cell_lengths'],
                      'cell_angles': row['cell_angles'], 'volume_per_fu': row['volume'] / units,
                      'converged': row['converged'], 'steps': row['steps'], 'structure': row.get('structure')}
    return rows


def relax_task(settings: dict) -> dict:
    """The ``AtomsTaskCalculation`` task of a ranking: relax in the structure's own space group."""
    return {'task': 'relax', 'fmax': settings['fmax'], 'max_steps': settings['max_steps'],
            'relax_cell': settings['relax_cell'], 'symprec': settings['symprec'], 'keep_symmetry': True}


@calcfunction
def task_relaxed_polymorphs(results: orm.Dict) -> orm.Dict:
    """The rows of one side relaxed by an ``AtomsTaskCalculation`` (potential or reference model)."""
    return orm.Dict(task_rows(results.get_dict()))


def pw_relax_outputs(nodes: dict) -> tuple[dict, dict[str, str]]:
    """The relaxed structure and parameters of each finished ``PwRelaxWorkChain`` (``<name>__structure``,
    ``<name>__parameters``: what ``pw_relaxed_polymorphs`` takes) and ``{name: reason}`` of those that failed."""
    outputs, failures = {}, {}
    for name, node in sorted(nodes.items()):
        if node.is_finished_ok and 'output_structure' in node.outputs:
            outputs[f'{name}__structure'] = node.outputs.output_structure
            outputs[f'{name}__parameters'] = node.outputs.output_parameters
        else:
            failures[name] = f'{node.process_label}<{node.pk}> [{node.exit_status}] {node.exit_message}'
    return outputs, failures


@calcfunction
def pw_relaxed_polymorphs(**outputs: orm.Data) -> orm.Dict:
    """The rows of the pw.x side: ``outputs`` holds ``<name>__structure`` and ``<name>__parameters`` of each
    finished ``PwRelaxWorkChain`` (pw.x's total energy, eV; the relaxed cell)."""
    rows = {}
    for key in outputs:
        name, kind = key.rsplit('__', 1)
        if kind != 'structure':
            continue
        parameters = outputs[f'{name}__parameters']
        rows[name] = relaxed_row(outputs[key].get_ase(), parameters['energy'], True,
                                 parameters.get('number_ionic_steps') or 0)
    return orm.Dict(rows)


@calcfunction
def tabulate_ranking(reference: orm.Dict, potential: orm.Dict, parameters: orm.Dict) -> dict:
    """The table (energies relative to the zero phase, lattice parameters, deviations, both orders), CSV and bar
    chart. A polymorph the reference could not relax (a failed pw.x relaxation) keeps a flagged row."""
    settings = ranking_parameters(parameters)
    rows = {'reference': reference.get_dict(), 'potential': potential.get_dict()}
    names = sorted(rows['potential'])
    failed = [name for name in names if name not in rows['reference']]
    usable = [name for name in names if name not in failed]
    zero = settings['reference_phase'] or min(usable, key=lambda n: rows['reference'][n]['energy_per_fu_eV'])
    table = []
    for name in names:
        row = {'polymorph': name, 'reference_failed': name in failed}
        for side in ('reference', 'potential'):
            result = rows[side].get(name)
            row[f'{side}_meV_per_fu'] = (1000 * (result['energy_per_fu_eV'] - rows[side][zero]['energy_per_fu_eV'])
                                         if result else None)
            row[f'{side}_cell_lengths'] = result['cell_lengths'] if result else None
            row[f'{side}_converged'] = bool(result and result['converged'])
        if name in failed:
            row['deviation_meV_per_fu'], row['lattice_deviation_percent'] = None, None
        else:
            row['deviation_meV_per_fu'] = row['potential_meV_per_fu'] - row['reference_meV_per_fu']
            row['lattice_deviation_percent'] = [100 * (p - r) / r for p, r in
                                                zip(row['potential_cell_lengths'], row['reference_cell_lengths'])]
        table.append(row)
    order = {side: sorted(usable, key=lambda n, s=side: rows[s][n]['energy_per_fu_eV']) for side in rows}
    summary = {'zero': zero, 'rows': table, 'order_reference': order['reference'], 'order_potential': order['potential'],
               'same_order': order['reference'] == order['potential'], 'reference_failed': failed,
               'not_converged': [f'{r["polymorph"]} ({side})' for r in table for side in ('reference', 'potential')
                                 if not r[f'{side}_converged']],
               'markdown': _markdown(table, zero)}
    return {'table': orm.Dict(summary),
            'csv': orm.SinglefileData(io.BytesIO(_csv(table).encode()), filename='polymorphs.csv'),
            'plot': orm.SinglefileData(io.BytesIO(_bar_chart(table, zero)), filename='polymorphs.png')}


def _markdown(table: list[dict], zero: str) -> str:
    lines = ['| polymorph | reference (meV/f.u.) | potential (meV/f.u.) | deviation | a, b, c reference (Å) | '
             'a, b, c deviation (%) |', '|---|---|---|---|---|---|']
    for row in table:
        if row['reference_failed']:
            lines.append(f'| {row["polymorph"]} (reference relaxation failed) | - | {row["potential_meV_per_fu"]:+.1f} '
                         f'| - | - | - |')
            continue
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
        reference_cell = row['reference_cell_lengths'] or [None] * 3
        writer.writerow([row['polymorph'], row['reference_meV_per_fu'], row['potential_meV_per_fu'],
                         row['deviation_meV_per_fu'], *reference_cell, *row['potential_cell_lengths'],
                         row['reference_converged'], row['potential_converged']])
    return buffer.getvalue()


def _bar_chart(table: list[dict], zero: str) -> bytes:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    names = [row['polymorph'] for row in table]
    x = np.arange(len(names))
    figure, axis = plt.subplots(figsize=(max(4, 1.2 * len(names)), 3.4))
    axis.bar(x - 0.2, [np.nan if row['reference_failed'] else row['reference_meV_per_fu'] for row in table], 0.4, label='reference', color='0.3')
    axis.bar(x + 0.2, [row['potential_meV_per_fu'] for row in table], 0.4, label='potential', color='tab:red')
    axis.set_xticks(x)
    axis.set_xticklabels(names)
    axis.set_ylabel(f'E - E({zero}) (meV/f.u.)')
    axis.axhline(0, color='0.5', lw=0.5)
    axis.legend(fontsize=8)
    return figure_png(figure, dpi=100)


class PolymorphRankingWorkChain(BenchmarkProtocolMixin, WorkChain):
    """Polymorph energies and lattice parameters with a potential against a reference: the reference labeller's
    model (default) or pw.x (``reference_qe``: one vc-relax ``PwRelaxWorkChain`` per polymorph)."""

    _PROTOCOL_FILE = f'{PROTOCOL}.yaml'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('potential', valid_type=POTENTIAL_TYPES, help='The potential to judge.')
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True,
                             help='The polymorphs, by name (e.g. `aiida_ferromlip.materials.polymorphs`).')
        spec.input('reference_model', valid_type=orm.Str, default=lambda: orm.Str('7net-0'),
                   help='The reference labeller model the potential is compared with (unless `reference_qe`).')
        spec.expose_inputs(QeLabelWorkChain, namespace='reference_qe', exclude=('structures', 'max_concurrent'),
                           namespace_options={'required': False, 'populate_defaults': False,
                                              'help': 'pw.x as the reference: the labelling settings (code, family, '
                                                      'protocol, overrides, magnetism, U) used for vc-relax.'})
        spec.input('parameters', valid_type=orm.Dict, required=False, help=f'Settings: {sorted(DEFAULTS)}.')
        spec.input('task_code', valid_type=orm.AbstractCode,
                   help='A ferromlip.atoms_task code: the relaxations run as jobs on its computer.')
        spec.inputs.validator = validate_inputs
        spec.outline(
            if_(cls.dft_reference)(cls.relax_with_pw, cls.collect_pw),
            cls.relax_with_models,
            cls.rank,
        )
        spec.output('table', valid_type=orm.Dict, help='Rows per polymorph, orders, non-converged relaxations, Markdown.')
        spec.output('csv', valid_type=orm.SinglefileData, help='The table as CSV.')
        spec.output('plot', valid_type=orm.SinglefileData, help='Bar chart of the relative energies (PNG).')
        declare(spec, 'ERROR_REFERENCE_PHASE_FAILED', 'ERROR_TOO_FEW_REFERENCE_RELAXATIONS',
                'ERROR_RELAXATION_JOB_FAILED')

    @classmethod
    def get_builder_from_protocol(cls, task_code: orm.AbstractCode, potential, structures: dict,
                                  protocol: str | None = None, overrides: dict | None = None, *,
                                  qe_code: orm.AbstractCode | None = None, label_protocol: str = 'fast'):
        """Builder ranking ``structures`` (name -> StructureData or ase.Atoms) with ``potential``, relaxed by jobs of
        ``task_code``, its ``parameters`` from protocols/polymorphs.yaml with ``overrides`` (``{'parameters': {...}}``)
        merged; with ``qe_code`` the reference is pw.x with the `qe` settings of the label protocol
        ``label_protocol``."""
        parameters = dict(cls.get_protocol_inputs(protocol, overrides)['parameters'])
        builder = cls.get_builder()
        builder.task_code = task_code
        builder.potential = potential
        builder.structures = {materials.port_name(name): s if isinstance(s, orm.StructureData)
                              else orm.StructureData(ase=s) for name, s in structures.items()}
        if qe_code is not None:
            from aiida_ferromlip.workflows.label.base import LabelWorkChain

            label = LabelWorkChain.get_builder_from_protocol(qe_code, {}, engine='qe', protocol=label_protocol)
            builder.reference_qe = {key: value for key, value in label.qe.items() if key != 'max_concurrent'}
        if parameters.get('reference_phase'):
            parameters['reference_phase'] = materials.port_name(parameters['reference_phase'])
        builder.parameters = orm.Dict(parameters)
        return builder

    def dft_reference(self):
        return 'code' in self.inputs.get('reference_qe', {})

    def relax_with_pw(self):
        from aiida_ferromlip.workflows.dft.qe import pw_relax_builder

        inputs = self.exposed_inputs(QeLabelWorkChain, namespace='reference_qe')
        relax_cell = ranking_parameters(self.inputs.get('parameters'))['relax_cell']
        for name, structure in sorted(self.inputs.structures.items()):
            builder = pw_relax_builder(inputs, structure, relax_cell)
            builder.metadata.call_link_label = f'pw_relax_{name}'
            self.to_context(**{f'pw_{name}': self.submit(builder)})
        self.report(f'pw.x {"vc-relax" if relax_cell else "relax (fixed cell)"} of {len(self.inputs.structures)} '
                    f'polymorph(s) submitted')

    def collect_pw(self):
        outputs, failures = pw_relax_outputs({name: self.ctx[f'pw_{name}'] for name in self.inputs.structures})
        failed = sorted(failures)
        for name, reason in sorted(failures.items()):
            self.report(f'pw.x relaxation of {name} failed ({reason}); its row is kept and flagged')
        zero = ranking_parameters(self.inputs.get('parameters')).get('reference_phase')
        if zero in failed:
            return self.exit_codes.ERROR_REFERENCE_PHASE_FAILED.format(phase=zero)
        if len(self.inputs.structures) - len(failed) < 2:
            return self.exit_codes.ERROR_TOO_FEW_REFERENCE_RELAXATIONS.format(failed=len(failed))
        self.ctx.reference = pw_relaxed_polymorphs(**outputs)
        return None

    def relax_with_models(self):
        settings = ranking_parameters(self.inputs.get('parameters'))
        models = {'potential': self.inputs.potential}
        if 'reference' not in self.ctx:
            models['reference'] = self.inputs.reference_model
        for side, model in models.items():
            node = self.submit(AtomsTaskCalculation, code=self.inputs.task_code, model=model,
                               structures=dict(self.inputs.structures), task=orm.Dict(relax_task(settings)),
                               metadata={'call_link_label': f'relax_{side}'})
            self.to_context(**{f'relax_{side}': node})

    def rank(self):
        parameters = self.inputs.get('parameters', orm.Dict(DEFAULTS))
        sides = {}
        for side in ('reference', 'potential'):
            if side == 'reference' and 'reference' in self.ctx:
                continue
            node = self.ctx[f'relax_{side}']
            if not node.is_finished_ok:
                return self.exit_codes.ERROR_RELAXATION_JOB_FAILED.format(
                    side=side, detail=f'{node.process_label}<{node.pk}> [{node.exit_status}] {node.exit_message}')
            sides[side] = task_relaxed_polymorphs(node.outputs.results)
        reference = self.ctx.reference if 'reference' in self.ctx else sides['reference']
        results = tabulate_ranking(reference, sides['potential'], parameters)
        for key in ('table', 'csv', 'plot'):
            self.out(key, results[key])
        table = results['table'].get_dict()
        for failed in table['not_converged']:
            self.report(f'relaxation of {failed} did not converge: its row is kept and flagged')
        self.report(f'order (reference): {" < ".join(table["order_reference"])}; '
                    f'order (potential): {" < ".join(table["order_potential"])}')
        return None
