"""``PerFrameLabelWorkChain``: what the DFT labellers share — one sub-workflow per frame, run in waves, collected
into one TrainingSet by a calcfunction whose inputs are the calculations' outputs (hence provenance per frame).

A subclass says which process labels a frame and how its inputs are built (:meth:`frame_builder`), which outputs
of a finished frame carry the labels (:meth:`label_sources`), what a frame cost (:meth:`frame_cost`) and which
calcfunction turns the sources into a TrainingSet (:attr:`training_set_function`).
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import WorkChain, calcfunction, while_

from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.exit_codes import declare
from aiida_ferromlip.materials.magnetism import cell_problems, is_spin_polarised, kinds_and_moments, magnetism_problems
from aiida_ferromlip.validation import DEFAULT_MIN_DISTANCE, structure_problems


class PerFrameLabelWorkChain(WorkChain):
    """Base of the DFT labellers: not a plugin itself."""

    _abstract = True  # no entry point: only its subclasses are plugins
    _PROGRAM = ''     # for the report: 'pw.x', 'VASP'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True,
                             help='Structures to label, by frame key.')
        spec.input('magnetism', valid_type=orm.Dict, required=False,
                   help="Per element: {'order': 'none' | 'ferromagnetic' | 'g-type', 'moment': μB}. Required for "
                        'magnetic elements.')
        spec.input('hubbard_u', valid_type=orm.Dict, required=False, help='Hubbard U in eV per element.')
        spec.input('options', valid_type=orm.Dict, required=False,
                   help='metadata.options of every calculation (resources, max_wallclock_seconds, ...).')
        spec.input('kpoints_distance_by_formula', valid_type=orm.Dict, required=False,
                   validator=_validate_distances,
                   help='Γ-centred k-point spacing (Å⁻¹, 2π included) per material, by formula ({"BiFeO3": 0.5}): '
                        'a frame whose reduced composition matches one takes it instead of the engine\'s default '
                        '(how the minimalist protocol reproduces that paper\'s mesh for each material).')
        spec.input('kpoints_mesh', valid_type=orm.List, required=False, validator=_validate_mesh,
                   help='One Γ-centred k-point mesh for every frame, e.g. [6, 6, 6], instead of a spacing: a '
                        'spacing changes the mesh between slightly strained cells (an equation of state, the '
                        'physics card), which puts steps into E(V). Takes precedence over both spacings.')
        spec.input('max_concurrent', valid_type=orm.Int, default=lambda: orm.Int(0),
                   validator=lambda value, _: None if value.value >= 0 else '`max_concurrent` must be >= 0',
                   help='At most this many frames run at a time (0: all at once, for a cluster queue). On a laptop '
                        'the direct scheduler would otherwise start every frame together.')
        spec.outline(cls.setup, while_(cls.has_pending)(cls.run_frames), cls.collect)
        spec.output('training_set', valid_type=TrainingSet, required=False, help='The frames that were labelled.')
        spec.output('failed_frames', valid_type=orm.Dict, help='`{frame key: reason}` of the frames left out.')
        spec.output('report', valid_type=orm.Dict, help='Cost per frame: wall time, SCF iterations, restarts.')
        declare(spec, 'ERROR_NO_FRAME_LABELLED')

    # ------------------------------------------------------------------------------ what subclasses provide
    def frame_builder(self, structure: orm.StructureData):
        raise NotImplementedError

    @staticmethod
    def label_sources(node: orm.ProcessNode) -> dict[str, orm.Data] | None:
        """``{name: output}`` holding a finished frame's labels, or None if it has none."""
        raise NotImplementedError

    @staticmethod
    def frame_cost(node: orm.ProcessNode) -> dict:
        raise NotImplementedError

    training_set_function = None

    # --------------------------------------------------------------------------------------------- steps
    def frame_structures(self) -> dict[str, orm.StructureData]:
        """The structures run, by frame key (a subclass may add its own, e.g. a reference)."""
        return dict(self.inputs.structures)

    def collect_inputs(self) -> dict[str, orm.Data]:
        """Extra inputs of :attr:`training_set_function` (e.g. its settings)."""
        return {}

    def setup(self):
        self.ctx.frame_keys = sorted(self.frame_structures())
        self.ctx.next = 0

    def has_pending(self):
        return self.ctx.next < len(self.ctx.frame_keys)

    def run_frames(self):
        total = len(self.ctx.frame_keys)
        start, stop = self.ctx.next, min(self.ctx.next + (self.inputs.max_concurrent.value or total), total)
        structures = self.frame_structures()
        for index in range(start, stop):
            builder = self.frame_builder(structures[self.ctx.frame_keys[index]])
            builder.metadata.call_link_label = f'frame_{index:04d}'
            self.to_context(**{f'frame_{index:04d}': self.submit(builder)})
        self.ctx.next = stop
        self.report(f'frames {start + 1}-{stop} of {total} submitted to {self._PROGRAM} (one workflow each)')

    def collect(self):
        sources, failures, frames_report = {}, {}, {}
        for index, key in enumerate(self.ctx.frame_keys):
            node = self.ctx[f'frame_{index:04d}']
            frames_report[key] = self.frame_cost(node)
            found = self.label_sources(node) if node.is_finished_ok else None
            if found:
                sources[key] = found
                continue
            failures[key] = (f'{node.process_label}<{node.pk}> ' +
                             (f'failed: [{node.exit_status}] {node.exit_message}' if node.is_finished
                              else 'excepted or was killed'))
            self.report(f'frame `{key}` left out: {failures[key]}')
        outputs = frames_report_summary(orm.Dict(frames_report), orm.Dict(failures))
        report = outputs['report'].get_dict()
        self.out('report', outputs['report'])
        self.out('failed_frames', outputs['failed_frames'])
        if not sources:
            return self.exit_codes.ERROR_NO_FRAME_LABELLED.format(failures=failures)
        keys, structures = sorted(sources), self.frame_structures()
        meta = {'keys': keys,
                'symbols': [structures[key].get_ase().get_chemical_symbols() for key in keys],
                'structure_uuids': [structures[key].uuid for key in keys]}
        inputs = {f'{name}_{position}': node for position, key in enumerate(keys)
                  for name, node in sources[key].items()}
        result = type(self).training_set_function(frames=orm.Dict(meta), **self.collect_inputs(), **inputs)
        for name, node in (result if isinstance(result, dict) else {'training_set': result}).items():
            self.out(name, node)
        self.report(f'{len(keys)} frame(s) labelled in {report["wall_time_total_s"]:.0f} s of {self._PROGRAM}, '
                    f'{report["scf_iterations_total"]} SCF iterations, {report["restarts_total"]} restart(s); '
                    f'{len(failures)} left out')
        return None


@calcfunction
def frames_report_summary(frames: orm.Dict, failures: orm.Dict) -> dict:
    """The per-frame DFT costs (wall time, SCF iterations, restarts of each frame's workflow) with their totals, and
    the frames left out."""
    return {'report': orm.Dict(_summary(frames.get_dict())), 'failed_frames': orm.Dict(failures.get_dict())}


def _summary(frames_report: dict) -> dict:
    times = [c['wall_time_s'] for c in frames_report.values() if c.get('wall_time_s') is not None]
    iterations = [c['scf_iterations'] for c in frames_report.values() if c.get('scf_iterations')]
    return {'frames': frames_report, 'wall_time_total_s': float(sum(times)),
            'scf_iterations_total': int(sum(iterations)),
            'scf_iterations_mean': float(np.mean(iterations)) if iterations else None,
            'restarts_total': int(sum(c['restarts'] for c in frames_report.values()))}


def called_calculations(workflow: orm.WorkflowNode) -> list[orm.CalcJobNode]:
    """Every calculation job run for ``workflow``, also those of its sub-workflows, in the order they were created."""
    return sorted((c for c in workflow.called_descendants if isinstance(c, orm.CalcJobNode)), key=lambda c: c.pk)


def input_value(inputs, key, default=None):
    """The plain value of port ``key`` (a dict for a Dict node) in a port namespace or a plain mapping."""
    value = inputs.get(key) if hasattr(inputs, 'get') else None
    if value is None:
        return default
    return value.get_dict() if isinstance(value, orm.Dict) else getattr(value, 'value', value)


def _validate_distances(value, _):
    from ase.formula import Formula

    for formula, distance in value.get_dict().items():
        try:
            Formula(formula)
        except ValueError:
            return f'`kpoints_distance_by_formula`: `{formula}` is not a chemical formula'
        if not isinstance(distance, (int, float)) or distance <= 0:
            return f'`kpoints_distance_by_formula`: the spacing of {formula} must be a positive number, got {distance}'
    return None


def _validate_mesh(value, _):
    mesh = value.get_list()
    if len(mesh) != 3 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in mesh):
        return f'`kpoints_mesh` must be three positive integers, got {mesh}'
    return None


def explicit_kpoints(inputs, structure: orm.StructureData) -> orm.KpointsData | None:
    """The Γ-centred ``kpoints_mesh`` of the inputs on ``structure``'s cell, or None when no mesh is given."""
    mesh = input_value(inputs, 'kpoints_mesh', None)
    if mesh is None:
        return None
    mesh = mesh.get_list() if isinstance(mesh, orm.List) else list(mesh)
    kpoints = orm.KpointsData()
    kpoints.set_cell_from_structure(structure)
    kpoints.set_kpoints_mesh(mesh, offset=[0, 0, 0])
    return kpoints


def kpoints_distance_for(inputs, structure: orm.StructureData) -> float | None:
    """The k-point spacing ``kpoints_distance_by_formula`` gives ``structure`` (its reduced composition matched
    against each formula), or None when it names none."""
    from collections import Counter

    from ase.formula import Formula

    by_formula = input_value(inputs, 'kpoints_distance_by_formula', {}) or {}
    composition = Counter(structure.get_ase().get_chemical_symbols())
    reduced = Formula.from_dict(composition).reduce()[0].count()
    for formula, distance in by_formula.items():
        if Formula(formula).reduce()[0].count() == reduced:
            return float(distance)
    return None


@calcfunction
def magnetic_structure(structure: orm.StructureData, magnetism: orm.Dict) -> orm.StructureData:
    """``structure`` with the kinds of the magnetic order (e.g. Fe1 up, Fe2 down for G-type)."""
    atoms = structure.get_ase()
    kinds, _ = kinds_and_moments(atoms, magnetism.get_dict())
    result = orm.StructureData(cell=atoms.cell.array, pbc=atoms.pbc)
    for symbol, kind, position in zip(atoms.get_chemical_symbols(), kinds, atoms.positions):
        result.append_atom(position=position, symbols=symbol, name=kind)
    return result


def magnetic_setup(inputs, structure: orm.StructureData) -> tuple[orm.StructureData, dict | None]:
    """The structure a DFT code sees and the starting moment (μB) per kind; moments are None when no element of
    ``structure`` is spin-polarised by the ``magnetism`` input. A G-type order splits the magnetic sites into two
    kinds through the ``magnetic_structure`` calcfunction, so those kinds have provenance."""
    atoms = structure.get_ase()
    symbols = set(atoms.get_chemical_symbols())
    magnetism = {k: v for k, v in (input_value(inputs, 'magnetism', {}) or {}).items() if k in symbols}
    if not is_spin_polarised(magnetism, symbols):
        return structure, None
    if any(setting['order'] == 'g-type' for setting in magnetism.values()):
        structure = magnetic_structure(structure, orm.Dict(magnetism))
    return structure, kinds_and_moments(atoms, magnetism)[1]


def frame_problems(inputs, structures) -> tuple[list[str], set[str]]:
    """What every DFT labeller refuses before launching: unphysical structures, magnetic elements without a chosen
    order, cells that cannot hold that order, bad Hubbard U. Returns the problems and the species found."""
    magnetism = input_value(inputs, 'magnetism', {}) or {}
    problems, symbols = [], set()
    for key, structure in structures.items():
        atoms = structure.get_ase()
        symbols |= set(atoms.get_chemical_symbols())
        problems += structure_problems(atoms, label=f'structure `{key}` ({structure.get_formula()})',
                                       min_distance=DEFAULT_MIN_DISTANCE)
        problems += [f'structure `{key}`: {problem}' for problem in cell_problems(atoms, magnetism)]
    problems += magnetism_problems(symbols, magnetism)
    for element, value in (input_value(inputs, 'hubbard_u', {}) or {}).items():
        if not isinstance(value, (int, float)) or value < 0:
            problems.append(f'hubbard_u of {element} must be a non-negative number of eV, got {value!r}')
    return problems, symbols
