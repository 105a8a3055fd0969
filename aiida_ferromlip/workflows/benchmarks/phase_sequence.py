"""``PhaseSequenceWorkChain``: the finite-temperature phase sequence of a perovskite ferroelectric with a potential
(BaTiO3-GAP paper, Figs. 1, 5, 6: BaTiO3's R -> O -> T -> C on heating).

Fully flexible-cell (NST) MD at every temperature of a list, all started from one supercell (by default BaTiO3
R3m 4x4x4, a heating run), through ``SampleCalculation`` (i-PI; independent runs by default, replica exchange
between the temperatures on request). After discarding an equilibration part, per temperature:

* the pseudocubic lattice parameters (cell lengths over the number of perovskite cells along each vector) and the
  cell angles, each frame's sorted (lengths largest first, angles farthest from 90 degrees first), mean and spread;
* the polarization of every frame and the unit-cell polarizations of every B-centred cell, from the local dipoles
  of ``materials.order_parameters`` (Born effective charges x displacements for BaTiO3: an estimate, stated as
  such in the outputs) or, given a ``polarization_model`` (the BaTiO3-GAP paper's route), from the Ti-centred sums of the
  model's partial dipoles (Ti + 1/2 of each O + 1/8 of each Ba);
* the phase, from the direction of the polarization: the three |P| components of each frame sorted, averaged
  over the frames; the largest below ``polar_threshold_c_m2`` is cubic (C), otherwise the number of components
  above ``component_fraction`` of the largest gives T (one: <100>), O (two: <110>) or R (three: <111>). Sorting
  per frame first makes this blind to the polarization hopping between symmetry-equivalent directions, which a
  finite cell does;
* the transition temperatures: half way between neighbouring temperatures of different phases;
* a temperature at which any analysed frame lost the perovskite network (a B cation without its 8 A and 6 O
  neighbours: the potential extrapolated into nonsense) is labelled ``broken``, counted, and left out of the
  transitions, rather than classified.

Outputs: the trajectories, a ``summary`` Dict, the per-frame order parameters (ArrayData) and one PNG (lattice
parameters, angles and |P| components vs T; histograms of the unit-cell polarization per temperature).
"""

from __future__ import annotations

import io
import pathlib

import numpy as np
from aiida import orm
from aiida.engine import WorkChain, calcfunction
from ase import Atoms

from aiida_ferromlip.analysis.plots import figure_png
from aiida_ferromlip.calculations.base import PROTOCOLS, ProtocolMixin
from aiida_ferromlip.data.polarization import PolarizationModel
from aiida_ferromlip.data.training_set import trajectory_frames
from aiida_ferromlip.materials import order_parameters
from aiida_ferromlip.protocols import default_inputs
from aiida_ferromlip.workflows.benchmarks.common import MolecularDynamicsMixin, merged_settings

#: The analysis defaults: `default_inputs.analysis` of protocols/phase_sequence.yaml (the one place they live).
ANALYSIS_DEFAULTS = default_inputs('phase_sequence')['analysis']
#: phase by the number of ordered polarization components
PHASES = {0: 'C', 1: 'T', 2: 'O', 3: 'R'}
#: the label of a temperature at which the MD lost the perovskite network (a potential extrapolating badly)
BROKEN = 'broken'


def analysis_parameters(parameters: orm.Dict | None) -> dict:
    settings = merged_settings(parameters, ANALYSIS_DEFAULTS, 'phase-sequence analysis')
    if not 0 <= settings['equilibration_fraction'] < 1:
        raise ValueError(f'`equilibration_fraction` must be in [0, 1), got {settings["equilibration_fraction"]}')
    if settings['polar_threshold_c_m2'] <= 0:
        raise ValueError('`polar_threshold_c_m2` must be positive')
    if not 0 < settings['component_fraction'] < 1:
        raise ValueError('`component_fraction` must be between 0 and 1')
    return settings


def classify(components, threshold: float, fraction: float) -> str:
    """R/O/T/C from the mean sorted |P| components (largest first), C/m^2."""
    largest = float(components[0])
    if largest < threshold:
        return 'C'
    return PHASES[int(sum(float(c) >= fraction * largest for c in components))]


def pseudocubic_cell(atoms: Atoms, num_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Pseudocubic lattice parameters (the cell lengths over the number of perovskite cells along each vector) and
    the cell angles (degrees)."""
    parameters = atoms.cell.cellpar()
    spacing = (atoms.get_volume() / num_cells) ** (1 / 3)
    repeats = np.maximum(np.rint(parameters[:3] / spacing), 1)
    return parameters[:3] / repeats, parameters[3:]


def sorted_cell(lattice: np.ndarray, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lattice parameters largest first and angles by their distance from 90 degrees, largest first: like the
    sorted |P|, blind to which axis the distortion chose (a finite cell's polar axis hops in MD)."""
    return np.sort(lattice)[::-1], angles[np.argsort(-np.abs(angles - 90.0), kind='stable')]


def frame_order_parameters(atoms: Atoms, charges: dict, model=None) -> dict:
    """Polarization (C/m^2), unit-cell polarizations (C/m^2, one per B-centred cell) and the pseudocubic cell.
    The cell dipoles are Born-charge local dipoles, or — with a polarization ``model`` — the Ti-centred sums of the
    model's partial dipoles (BaTiO3-GAP paper)."""
    if model is None:
        _, dipoles = order_parameters.local_dipoles(atoms, charges)
    else:
        _, dipoles = order_parameters.cell_dipoles_from_partials(atoms, model.predict(atoms)[1])
    unit_cells = dipoles / (atoms.get_volume() / len(dipoles)) * order_parameters.E_PER_A2_TO_C_PER_M2
    lattice, angles = sorted_cell(*pseudocubic_cell(atoms, len(dipoles)))
    return {'polarization': unit_cells.mean(axis=0), 'unit_cells': unit_cells, 'lattice': lattice, 'angles': angles}


def transitions(temperatures, phases) -> list[dict]:
    """Where the phase changes between neighbouring temperatures: both phases, the bracket and its midpoint."""
    found = []
    for (t_low, low), (t_high, high) in zip(zip(temperatures, phases), list(zip(temperatures, phases))[1:]):
        if low != high:
            found.append({'from': low, 'to': high, 'between_K': [float(t_low), float(t_high)],
                          'temperature_K': 0.5 * (float(t_low) + float(t_high))})
    return found


@calcfunction
def phase_sequence(analysis: orm.Dict, polarization_model: orm.ArrayData | None = None,
                   **trajectories: orm.TrajectoryData) -> dict:
    """Lattice parameters, polarization and phase per temperature; transition temperatures; the plot."""
    settings = analysis_parameters(analysis)
    by_temperature = sorted(trajectories.values(),
                            key=lambda t: float(np.mean(t.get_array('target_temperatures'))))
    first = trajectory_frames(by_temperature[0], 0.0)[0]
    charges, charge_source = order_parameters.default_charges(first)
    model = polarization_model.model() if polarization_model is not None else None
    source = (f'Ti-centred sums of the partial dipoles of PolarizationModel<{polarization_model.pk}>'
              if model is not None else
              f'local dipoles with {charge_source} (an estimate, not a Berry-phase or machine-learned polarization)')
    arrays, rows = orm.ArrayData(), []
    for trajectory in by_temperature:
        temperature = float(np.mean(trajectory.get_array('target_temperatures')))
        key = f'T_{int(round(temperature)):04d}K'
        frames, broken = [], 0
        for atoms in trajectory_frames(trajectory, settings['equilibration_fraction']):
            try:
                frames.append(frame_order_parameters(atoms, charges, model))
            except ValueError:  # a B cation without its 8 A and 6 O neighbours: the potential broke the crystal
                broken += 1
        if broken:
            rows.append({'key': key, 'temperature_K': temperature, 'phase': BROKEN, 'broken_frames': broken,
                         'frames_analysed': broken + len(frames),
                         'mean_kinetic_temperature_K': float(np.mean(trajectory.get_array('temperatures')))})
            continue
        polarization = np.array([f['polarization'] for f in frames])
        lattice, angles = np.array([f['lattice'] for f in frames]), np.array([f['angles'] for f in frames])
        components = np.sort(np.abs(polarization), axis=1)[:, ::-1].mean(axis=0)
        arrays.set_array(f'{key}_polarization', polarization)
        arrays.set_array(f'{key}_unit_cell_polarization', np.concatenate([f['unit_cells'] for f in frames]))
        arrays.set_array(f'{key}_lattice', lattice)
        arrays.set_array(f'{key}_angles', angles)
        rows.append({'key': key, 'temperature_K': temperature, 'frames_analysed': len(frames),
                     'phase': classify(components, settings['polar_threshold_c_m2'], settings['component_fraction']),
                     'sorted_abs_polarization_c_m2': components.tolist(),
                     'mean_polarization_c_m2': polarization.mean(axis=0).tolist(),
                     'lattice_A': lattice.mean(axis=0).tolist(), 'lattice_std_A': lattice.std(axis=0).tolist(),
                     'angles_deg': angles.mean(axis=0).tolist(), 'angles_std_deg': angles.std(axis=0).tolist(),
                     'mean_kinetic_temperature_K': float(np.mean(trajectory.get_array('temperatures')))})
    intact = [row for row in rows if row['phase'] != BROKEN]
    summary = {'temperatures': rows, 'sequence': [row['phase'] for row in rows],
               'transitions': transitions([r['temperature_K'] for r in intact], [r['phase'] for r in intact]),
               'broken_at_K': [row['temperature_K'] for row in rows if row['phase'] == BROKEN],
               'polarization_from': source,
               'charges': charges, 'atoms': len(first), 'analysis': settings}
    png = _figure(summary, arrays)
    return {'summary': orm.Dict(summary), 'order_parameters': arrays,
            'plot': orm.SinglefileData(io.BytesIO(png), filename='phase_sequence.png')}


def _figure(summary: dict, arrays: orm.ArrayData) -> bytes:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    every = summary['temperatures']
    rows = [row for row in every if row['phase'] != BROKEN]
    temperatures = [row['temperature_K'] for row in rows]
    figure = plt.figure(figsize=(max(12, 2.4 * len(every)), 7.5))
    grid = figure.add_gridspec(2, 1, height_ratios=[1.1, 1])
    top = grid[0].subgridspec(1, 3, wspace=0.3).subplots()
    bottom = grid[1].subgridspec(1, len(every), wspace=0.15).subplots(sharex=True, sharey=True)
    bottom = np.atleast_1d(bottom)
    panels = ((top[0], 'lattice_A', 'lattice_std_A', ('a₁', 'a₂', 'a₃'), 'pseudocubic lattice, sorted (Å)'),
              (top[1], 'angles_deg', 'angles_std_deg', ('1st', '2nd', '3rd'), 'cell angles, by |90° − angle| (°)'),
              (top[2], 'sorted_abs_polarization_c_m2', None, ('|P|₁', '|P|₂', '|P|₃'), '|P| components, sorted (C/m²)'))
    for axis, key, spread, labels, ylabel in panels:
        values = np.array([row[key] for row in rows])
        errors = np.array([row[spread] for row in rows]) if spread else np.zeros_like(values)
        for k, label in enumerate(labels):
            axis.errorbar(temperatures, values[:, k], yerr=errors[:, k], marker='o', ms=4, capsize=2, label=label)
        for transition in summary['transitions']:
            axis.axvline(transition['temperature_K'], color='grey', ls='--', lw=0.8)
        axis.set_xlabel('T (K)')
        axis.set_ylabel(ylabel)
        axis.legend(fontsize=8)
    top[2].axhline(summary['analysis']['polar_threshold_c_m2'], color='k', lw=0.6, ls=':')
    for row in rows:
        top[2].annotate(row['phase'], (row['temperature_K'], row['sorted_abs_polarization_c_m2'][0]),
                        textcoords='offset points', xytext=(0, 8), ha='center', fontweight='bold')
    for axis, row in zip(bottom, every):
        if row['phase'] == BROKEN:
            axis.text(0.5, 0.5, f'perovskite network lost\nin {row["broken_frames"]} of\n{row["frames_analysed"]} frames',
                      transform=axis.transAxes, ha='center', va='center', color='firebrick')
            axis.set_title(f'{row["temperature_K"]:.0f} K: broken', fontsize=9)
            continue
        cells = arrays.get_array(f'{row["key"]}_unit_cell_polarization')
        for k, label in enumerate(('P$_x$', 'P$_y$', 'P$_z$')):
            axis.hist(cells[:, k], bins=40, histtype='step', density=True, label=label)
        axis.set_title(f'{row["temperature_K"]:.0f} K: {row["phase"]}', fontsize=9)
        axis.set_xlabel('unit-cell P (C/m²)')
    bottom[0].set_ylabel('density')
    bottom[0].legend(fontsize=8)
    sequence = ', '.join(f'{t["from"]}→{t["to"]} at {t["temperature_K"]:.0f} K' for t in summary['transitions'])
    broken = (f'; crystal broken at {", ".join(f"{t:.0f}" for t in summary["broken_at_K"])} K'
              if summary['broken_at_K'] else '')
    figure.suptitle(f'{summary["atoms"]}-atom NST MD; transitions: {sequence or "none in this range"}{broken}',
                    fontsize=10)
    return figure_png(figure, dpi=90)


def validate_inputs(inputs, _):
    if 'potential' not in inputs or 'structure' not in inputs or 'sample' not in inputs:
        return None
    try:
        analysis_parameters(inputs.get('analysis'))
    except ValueError as exception:
        return str(exception)
    atoms = inputs['structure'].get_ase()
    parameters = inputs['sample']['parameters'].get_dict()
    problems = PhaseSequenceWorkChain.md_problems(inputs)
    if parameters.get('mode') != 'remd' or parameters.get('ensemble') != 'nst':
        problems.append('the phase sequence needs MD per temperature in a fully flexible cell (`mode: remd`, '
                        '`ensemble: nst`): a fixed cell shape cannot follow the R/O/T/C distortions')
    try:
        order_parameters.local_dipoles(atoms)
    except ValueError as exception:
        problems.append(f'the structure has no perovskite local dipoles: {exception}')
    return '\n'.join(problems) if problems else None


class PhaseSequenceWorkChain(MolecularDynamicsMixin, ProtocolMixin, WorkChain):
    """NST MD of a perovskite supercell at a list of temperatures; lattice, polarization, phases, transitions."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        cls.define_md(spec, 'The supercell every temperature starts from (an ABO3 perovskite, axes pseudocubic).')
        spec.input('analysis', valid_type=orm.Dict, required=False,
                   help=f'Settings of the analysis: {sorted(ANALYSIS_DEFAULTS)}.')
        spec.input('polarization_model', valid_type=PolarizationModel, required=False,
                   help='A dipole model: unit-cell dipoles from its partial dipoles instead of Born charges.')
        spec.inputs.validator = validate_inputs
        spec.outline(cls.run_md, cls.inspect_md, cls.analyse)
        spec.output_namespace('trajectories', valid_type=orm.TrajectoryData, dynamic=True,
                              help='The MD trajectory at every temperature.')
        spec.output('summary', valid_type=orm.Dict, help='Per temperature: phase, lattice, polarization; transitions.')
        spec.output('order_parameters', valid_type=orm.ArrayData, help='Per frame: P, unit-cell P, lattice, angles.')
        spec.output('plot', valid_type=orm.SinglefileData, help='Lattice/angles/|P| vs T and P histograms (PNG).')

    @classmethod
    def get_protocol_filepath(cls) -> pathlib.Path:
        return PROTOCOLS / 'phase_sequence.yaml'

    @classmethod
    def get_builder_from_protocol(cls, code, potential, structure: orm.StructureData | None = None,
                                  protocol: str | None = None, overrides: dict | None = None, *, options=None):
        """Builder (protocols fast | batio3_gap); without ``structure``, the protocol's BaTiO3 ``start_phase`` in its
        ``supercell``. ``overrides`` (``{'sample': {'parameters': ...}, 'analysis': ...}``) merged without
        mutation."""
        from aiida_ferromlip.materials import perovskite_polymorph

        inputs = cls.get_protocol_inputs(protocol, overrides)
        if structure is None:
            if not {'Ba', 'Ti', 'O'} <= set(potential.species):
                raise ValueError(f'the default start structure is BaTiO3, which a potential for '
                                 f'{", ".join(potential.species)} cannot run: give `structure`')
            structure = orm.StructureData(ase=perovskite_polymorph('Ba', 'Ti', inputs['start_phase'],
                                                                   supercell=tuple(inputs['supercell'])))
        return cls.md_builder(code, potential, structure, inputs, options)

    def inspect_md(self):
        failed = self.md_failed()
        if failed:
            return failed
        self.out('trajectories', dict(self.ctx.md.outputs.trajectories))
        return None

    def analyse(self):
        extra = {'polarization_model': self.inputs.polarization_model} if 'polarization_model' in self.inputs else {}
        results = phase_sequence(self.inputs.get('analysis', orm.Dict(ANALYSIS_DEFAULTS)), **extra,
                                 **dict(self.ctx.md.outputs.trajectories))
        for key, node in results.items():
            self.out(key, node)
        summary = results['summary'].get_dict()
        for row in summary['temperatures']:
            if row['phase'] == BROKEN:
                self.report(f'{row["temperature_K"]:.0f} K: the perovskite network was lost in {row["broken_frames"]} '
                            f'of {row["frames_analysed"]} analysed frames (the potential fails here)')
                continue
            p = ', '.join(f'{x:.3f}' for x in row['sorted_abs_polarization_c_m2'])
            a = ', '.join(f'{x:.3f}' for x in row['lattice_A'])
            self.report(f'{row["temperature_K"]:.0f} K: {row["phase"]} (sorted |P| {p} C/m²; sorted lattice {a} Å)')
        found = '; '.join(f'{t["from"]} -> {t["to"]} at {t["temperature_K"]:.0f} K' for t in summary['transitions'])
        self.report(f'phase sequence {"-".join(summary["sequence"])}; transitions: {found or "none"}')
