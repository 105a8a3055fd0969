"""``QeLabelWorkChain``: label a batch of structures with Quantum ESPRESSO through aiida-quantumespresso.

Every frame is one ``PwBaseWorkChain`` (so its restart handlers deal with unconverged SCF, walltime and the
like), built with aiida-quantumespresso's ``get_builder_from_protocol``: cutoffs from the pseudopotential
family's recommendations, k-points by density (Γ-centred), PBEsol through the family. What the plugin adds:

* a magnetic setting per element, required for magnetic elements (G-type order splits the sites in two kinds);
* Hubbard U per element, written in the ``lda_plus_u``/``Hubbard_U(i)`` form that pw.x 6.x reads (the
  ``HubbardStructureData`` card of aiida-quantumespresso needs pw.x ≥ 7.1);
* the energies, forces and stress of every converged frame collected into one ``TrainingSet`` by a calcfunction
  whose inputs are the ``PwCalculation`` outputs, so the set has provenance back to each calculation;
* the cost of each label (wall time, SCF iterations, restarts) summarised in the ``report`` output.
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.common import exceptions
from aiida.engine import WorkChain, calcfunction
from aiida_quantumespresso.common.types import ElectronicType, SpinType
from aiida_quantumespresso.workflows.protocols.utils import recursive_merge
from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.units import GPa

from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.materials.magnetism import is_spin_polarised, kinds_and_moments, magnetism_problems
from aiida_ferromlip.pseudos import DEFAULT_FAMILY
from aiida_ferromlip.validation import DEFAULT_MIN_DISTANCE, structure_problems

QE_PROTOCOLS = ('fast', 'balanced', 'stringent')  # aiida-quantumespresso's PwBaseWorkChain protocols

#: ``prepend_text`` of a local pw.x code: Open MPI refuses to start as root unless told (containers and CI run as
#: root), and one OpenMP thread per MPI rank keeps pw.x from oversubscribing a laptop.
PW_PREPEND_TEXT = ('export OMP_NUM_THREADS=1\n'
                   'if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi')


def _get(inputs, key, default=None):
    value = inputs.get(key) if hasattr(inputs, 'get') else None
    if value is None:
        return default
    return value.get_dict() if isinstance(value, orm.Dict) else getattr(value, 'value', value)


def load_family(label: str):
    from aiida_pseudo.groups.family import PseudoPotentialFamily

    query = orm.QueryBuilder().append(PseudoPotentialFamily, filters={'label': label})
    try:
        return query.one()[0]
    except exceptions.NotExistent:
        raise ValueError(f'pseudopotential family `{label}` is not installed: run `ferromlip pseudos install` (builds '
                         f'the PBEsol pslibrary family offline with ld1.x) or `aiida-pseudo install sssp`') from None


def qe_input_problems(inputs, structures) -> str | None:
    """Why ``structures`` cannot be labelled with the QE ``inputs``; checked before any calculation is launched."""
    if not structures:
        return 'no structures were given to label'
    try:
        family = load_family(_get(inputs, 'pseudo_family', DEFAULT_FAMILY))
    except ValueError as exception:
        return str(exception)
    overrides = _get(inputs, 'overrides', {}) or {}
    system = overrides.get('pw', {}).get('parameters', {}).get('SYSTEM', {})
    explicit_cutoffs = 'ecutwfc' in system and 'ecutrho' in system
    protocol = _get(inputs, 'protocol', 'balanced')
    if protocol not in QE_PROTOCOLS:
        return f'unknown QE protocol `{protocol}`; choose one of {", ".join(QE_PROTOCOLS)}'
    magnetism = _get(inputs, 'magnetism', {}) or {}
    hubbard = _get(inputs, 'hubbard_u', {}) or {}
    problems = []
    symbols = set()
    for key, structure in structures.items():
        atoms = structure.get_ase()
        symbols |= set(atoms.get_chemical_symbols())
        problems += structure_problems(atoms, label=f'structure `{key}` ({structure.get_formula()})',
                                       min_distance=DEFAULT_MIN_DISTANCE)
        if magnetism:
            try:
                kinds_and_moments(atoms, {k: v for k, v in magnetism.items() if isinstance(v, dict) and
                                          v.get('order') in ('g-type',) and isinstance(v.get('moment'), (int, float))})
            except ValueError as exception:
                problems.append(f'structure `{key}`: {exception}')
    missing = sorted(symbols - set(family.elements))
    if missing:
        problems.append(f'pseudopotential family `{family.label}` has no pseudopotential for {", ".join(missing)} '
                        f'(it has {", ".join(sorted(family.elements))})')
    elif not explicit_cutoffs:
        problems += _cutoff_problems(family, symbols)
    problems += magnetism_problems(symbols, magnetism)
    for element, value in hubbard.items():
        if not isinstance(value, (int, float)) or value < 0:
            problems.append(f'hubbard_u of {element} must be a non-negative number of eV, got {value!r}')
    return '\n'.join(problems) if problems else None


def _cutoff_problems(family, symbols) -> list[str]:
    try:
        cutoffs = family.get_cutoffs()
    except (AttributeError, ValueError):
        cutoffs = None
    if cutoffs is None:
        return [f'pseudopotential family `{family.label}` recommends no cutoffs: give both `ecutwfc` and `ecutrho` in '
                f"`overrides` {{'pw': {{'parameters': {{'SYSTEM': {{...}}}}}}}}"]
    lacking = sorted(s for s in symbols if s not in cutoffs)
    if lacking:
        return [f'pseudopotential family `{family.label}` recommends no cutoffs for {", ".join(lacking)}']
    return []


def validate_inputs(inputs, namespace):
    if 'structures' not in namespace:
        return None  # exposed by the LabelWorkChain, which validates through the engine contract
    return qe_input_problems(inputs, inputs.get('structures', {}))


@calcfunction
def magnetic_structure(structure: orm.StructureData, magnetism: orm.Dict) -> orm.StructureData:
    """``structure`` with the kinds of the magnetic order (e.g. Fe1 up, Fe2 down for G-type)."""
    atoms = structure.get_ase()
    kinds, _ = kinds_and_moments(atoms, magnetism.get_dict())
    result = orm.StructureData(cell=atoms.cell.array, pbc=atoms.pbc)
    for symbol, kind, position in zip(atoms.get_chemical_symbols(), kinds, atoms.positions):
        result.append_atom(position=position, symbols=symbol, name=kind)
    return result


@calcfunction
def training_set_from_pw(frames: orm.Dict, **outputs) -> TrainingSet:
    """One TrainingSet from the ``output_parameters``/``output_trajectory`` of converged ``PwCalculation``s.

    ``outputs`` holds ``parameters_<i>`` and ``trajectory_<i>`` for each frame ``i`` of ``frames['keys']``;
    ``frames`` also carries each frame's chemical symbols and input-structure uuid. Units: the pw parser gives
    eV, eV/Å and GPa; QE's stress sign is opposite to ASE's (QE: positive = compressed), hence the minus.
    """
    meta = frames.get_dict()
    atoms_list, origins = [], []
    for index, key in enumerate(meta['keys']):
        parameters = outputs[f'parameters_{index}']
        trajectory = outputs[f'trajectory_{index}']
        atoms = Atoms(symbols=meta['symbols'][index], positions=trajectory.get_array('positions')[-1],
                      cell=trajectory.get_array('cells')[-1], pbc=True)
        stress = None
        if 'stress' in trajectory.get_arraynames():
            stress = -np.array(trajectory.get_array('stress')[-1], dtype=float) * GPa
        atoms.calc = SinglePointCalculator(atoms, energy=parameters['energy'], stress=stress,
                                           forces=np.array(trajectory.get_array('forces')[-1], dtype=float))
        atoms_list.append(atoms)
        origins.append({'labeller': 'qe', 'frame_key': key, 'process_uuid': trajectory.creator.uuid,
                        'structure_uuid': meta['structure_uuids'][index],
                        'code_version': parameters.get('creator_version')})
    return TrainingSet(frames=atoms_list, origins=origins)


def pw_builder(inputs, structure: orm.StructureData):
    """The ``PwBaseWorkChain`` builder that labels ``structure`` with the QE ``inputs`` (the work chain's ports).

    A G-type order first runs the ``magnetic_structure`` calcfunction, so the kinds pw.x sees have provenance.
    """
    atoms = structure.get_ase()
    symbols = set(atoms.get_chemical_symbols())
    magnetism = {k: v for k, v in (_get(inputs, 'magnetism', {}) or {}).items() if k in symbols}
    overrides = dict(_get(inputs, 'overrides', {}) or {})
    overrides['pseudo_family'] = _get(inputs, 'pseudo_family', DEFAULT_FAMILY)
    spin_type, moments = SpinType.NONE, None
    if is_spin_polarised(magnetism, symbols):
        if any(v['order'] == 'g-type' for v in magnetism.values()):
            structure = magnetic_structure(structure, orm.Dict(magnetism))
        _, moments = kinds_and_moments(atoms, magnetism)
        spin_type = SpinType.COLLINEAR
    hubbard = {kind.name: value for element, value in (_get(inputs, 'hubbard_u', {}) or {}).items()
               for kind in structure.kinds if kind.symbol == element}
    if hubbard:
        # pw.x 6.x syntax; aiida-quantumespresso maps kind names to Hubbard_U(i) indices.
        system = {'lda_plus_u': True, 'hubbard_u': hubbard}
        overrides = recursive_merge(overrides, {'pw': {'parameters': {'SYSTEM': system}}})
    return PwBaseWorkChain.get_builder_from_protocol(
        inputs['code'], structure, protocol=_get(inputs, 'protocol', 'balanced'), overrides=overrides,
        electronic_type=ElectronicType.METAL, spin_type=spin_type, initial_magnetic_moments=moments,
        options=_get(inputs, 'options', None))


class QeLabelWorkChain(WorkChain):
    """Label structures with pw.x (one ``PwBaseWorkChain`` each) and return one TrainingSet."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True,
                             help='Structures to label, by frame key.')
        spec.input('code', valid_type=orm.AbstractCode, help='A `quantumespresso.pw` code.')
        spec.input('pseudo_family', valid_type=orm.Str, default=lambda: orm.Str(DEFAULT_FAMILY),
                   help='aiida-pseudo family label (default: the PBEsol pslibrary family `ferromlip pseudos install` '
                        'builds); its recommended cutoffs are used unless `overrides` give both.')
        spec.input('protocol', valid_type=orm.Str, default=lambda: orm.Str('balanced'),
                   help=f'aiida-quantumespresso PwBaseWorkChain protocol: {", ".join(QE_PROTOCOLS)}.')
        spec.input('overrides', valid_type=orm.Dict, required=False,
                   help='Overrides of the PwBaseWorkChain protocol (kpoints_distance, pw.parameters, ...).')
        spec.input('magnetism', valid_type=orm.Dict, required=False,
                   help="Per element: {'order': 'none' | 'ferromagnetic' | 'g-type', 'moment': μB}. Required for "
                        'magnetic elements.')
        spec.input('hubbard_u', valid_type=orm.Dict, required=False, help='Hubbard U in eV per element.')
        spec.input('options', valid_type=orm.Dict, required=False,
                   help='metadata.options of every PwCalculation (resources, max_wallclock_seconds, ...).')
        spec.inputs.validator = validate_inputs

        spec.outline(cls.run_pw, cls.collect)

        spec.output('training_set', valid_type=TrainingSet, required=False, help='The frames that were labelled.')
        spec.output('failed_frames', valid_type=orm.Dict, help='`{frame key: reason}` of the frames left out.')
        spec.output('report', valid_type=orm.Dict, help='Cost per frame: wall time, SCF iterations, restarts.')
        spec.exit_code(401, 'ERROR_NO_FRAME_LABELLED', message='No frame could be labelled: {failures}')

    def run_pw(self):
        self.ctx.frame_keys = sorted(self.inputs.structures)
        for index, key in enumerate(self.ctx.frame_keys):
            builder = pw_builder(self.inputs, self.inputs.structures[key])
            builder.metadata.call_link_label = f'pw_{index:04d}'
            node = self.submit(builder)
            self.to_context(**{f'pw_{index:04d}': node})
        self.report(f'{len(self.ctx.frame_keys)} pw.x label(s) submitted (one PwBaseWorkChain each)')

    def collect(self):
        labelled, failures, frames_report = [], {}, {}
        for index, key in enumerate(self.ctx.frame_keys):
            node = self.ctx[f'pw_{index:04d}']
            frames_report[key] = _cost(node)
            if node.is_finished_ok and 'output_trajectory' in node.outputs:
                labelled.append((index, key, node))
            else:
                failures[key] = (f'PwBaseWorkChain<{node.pk}> ' +
                                 (f'failed: [{node.exit_status}] {node.exit_message}' if node.is_finished
                                  else 'excepted or was killed'))
                self.report(f'frame `{key}` left out: {failures[key]}')
        times = [c['wall_time_s'] for c in frames_report.values() if c['wall_time_s'] is not None]
        iterations = [c['scf_iterations'] for c in frames_report.values() if c['scf_iterations']]
        report = {'frames': frames_report, 'wall_time_total_s': float(sum(times)),
                  'scf_iterations_total': int(sum(iterations)),
                  'scf_iterations_mean': float(np.mean(iterations)) if iterations else None,
                  'restarts_total': int(sum(c['restarts'] for c in frames_report.values()))}
        self.out('report', orm.Dict(report).store())
        self.out('failed_frames', orm.Dict(failures).store())
        if not labelled:
            return self.exit_codes.ERROR_NO_FRAME_LABELLED.format(failures=failures)
        meta = {'keys': [key for _, key, _ in labelled],
                'symbols': [self.inputs.structures[key].get_ase().get_chemical_symbols() for _, key, _ in labelled],
                'structure_uuids': [self.inputs.structures[key].uuid for _, key, _ in labelled]}
        outputs = {}
        for position, (_, _, node) in enumerate(labelled):
            outputs[f'parameters_{position}'] = node.outputs.output_parameters
            outputs[f'trajectory_{position}'] = node.outputs.output_trajectory
        training_set = training_set_from_pw(frames=orm.Dict(meta), **outputs)
        self.out('training_set', training_set)
        self.report(f'{len(labelled)} frame(s) labelled in {report["wall_time_total_s"]:.0f} s of pw.x, '
                    f'{report["scf_iterations_total"]} SCF iterations, {report["restarts_total"]} restart(s); '
                    f'{len(failures)} left out')
        return None


def _cost(workchain: orm.WorkChainNode) -> dict:
    """Wall time and SCF iterations summed over every pw.x run of a frame (failed attempts cost time too)."""
    calculations = [c for c in workchain.called if isinstance(c, orm.CalcJobNode)]
    wall, iterations = 0.0, 0
    for calculation in calculations:
        if 'output_parameters' in calculation.outputs:
            parameters = calculation.outputs.output_parameters
            wall += float(parameters.get('wall_time_seconds') or 0.0)
            iterations += int(parameters.get('total_number_of_scf_iterations') or 0)
    return {'pw_pks': [c.pk for c in calculations], 'wall_time_s': wall if calculations else None,
            'scf_iterations': iterations, 'restarts': max(len(calculations) - 1, 0)}
