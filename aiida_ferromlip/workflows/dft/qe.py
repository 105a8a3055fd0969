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
from aiida.engine import calcfunction
from aiida_quantumespresso.common.types import ElectronicType, SpinType
from aiida_quantumespresso.workflows.protocols.utils import recursive_merge
from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.units import GPa

from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.pseudos import DEFAULT_FAMILY
from aiida_ferromlip.workflows.dft.per_frame import (
    PerFrameLabelWorkChain,
    called_calculations,
    explicit_kpoints,
    frame_problems,
    input_value,
    kpoints_distance_for,
    magnetic_setup,
)

QE_PROTOCOLS = ('fast', 'balanced', 'stringent')  # aiida-quantumespresso's PwBaseWorkChain protocols

#: ``prepend_text`` of a local pw.x code: Open MPI refuses to start as root unless told (containers and CI run as
#: root), and one OpenMP thread per MPI rank keeps pw.x from oversubscribing a laptop.
PW_PREPEND_TEXT = ('export OMP_NUM_THREADS=1\n'
                   'if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi')


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
        family = load_family(input_value(inputs, 'pseudo_family', DEFAULT_FAMILY))
    except ValueError as exception:
        return str(exception)
    overrides = input_value(inputs, 'overrides', {}) or {}
    system = overrides.get('pw', {}).get('parameters', {}).get('SYSTEM', {})
    explicit_cutoffs = 'ecutwfc' in system and 'ecutrho' in system
    protocol = input_value(inputs, 'protocol', 'balanced')
    if protocol not in QE_PROTOCOLS:
        return f'unknown QE protocol `{protocol}`; choose one of {", ".join(QE_PROTOCOLS)}'
    problems, symbols = frame_problems(inputs, structures)
    missing = sorted(symbols - set(family.elements))
    if missing:
        problems.append(f'pseudopotential family `{family.label}` has no pseudopotential for {", ".join(missing)} '
                        f'(it has {", ".join(sorted(family.elements))})')
    elif not explicit_cutoffs:
        problems += _cutoff_problems(family, symbols)
    return '\n'.join(problems) if problems else None


def cell_relaxation_problems(inputs, structures) -> str | None:
    """Explicit cutoffs below the family's recommendation are refused for a cell relaxation: the Pulay stress of an
    unconverged basis drives the cell (measured: the `fast` label protocol's 30/240 Ry shrank cubic BaTiO3 from 64
    to 46 Å^3 over five vc-relax restarts, each convinced the stress was still there)."""
    system = (input_value(inputs, 'overrides', {}) or {}).get('pw', {}).get('parameters', {}).get('SYSTEM', {})
    if 'ecutwfc' not in system:
        return None
    family = load_family(input_value(inputs, 'pseudo_family', DEFAULT_FAMILY))
    try:
        symbols = sorted({s for structure in structures.values() for s in structure.get_ase().get_chemical_symbols()})
        recommended, _ = family.get_recommended_cutoffs(elements=tuple(symbols), unit='Ry')
    except (AttributeError, ValueError):
        return None
    if float(system['ecutwfc']) < recommended:
        return (f'a pw.x cell relaxation at ecutwfc {system["ecutwfc"]} Ry, below the {recommended:.0f} Ry family '
                f'`{family.label}` recommends, follows the Pulay stress of the basis, not the physics: relax positions '
                f'only (`relax_cell: false`) or use a protocol with converged cutoffs (e.g. the label protocol '
                f'`moderate`)')
    return None


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
def training_set_from_pw(frames: orm.Dict, **outputs) -> TrainingSet:
    """One TrainingSet from the ``output_parameters``/``output_trajectory`` of converged ``PwCalculation``s.

    ``outputs`` holds ``parameters_<i>`` and ``trajectory_<i>`` for each frame ``i`` of ``frames['keys']``;
    ``frames`` also carries each frame's chemical symbols and input-structure uuid.
    """
    atoms_list, origins = pw_frames(frames.get_dict(), outputs)
    return TrainingSet(frames=atoms_list, origins=origins)


def pw_frames(meta: dict, outputs: dict, positions: list[int] | None = None) -> tuple[list[Atoms], list[dict]]:
    """The labelled frames and origins of :func:`training_set_from_pw` (all, or those at ``positions`` of
    ``meta['keys']``). Units: the pw parser gives eV, eV/Å and GPa; QE's stress sign is opposite to ASE's (QE:
    positive = compressed), hence the minus."""
    atoms_list, origins = [], []
    for index in range(len(meta['keys'])) if positions is None else positions:
        key = meta['keys'][index]
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
    return atoms_list, origins


def pw_protocol_arguments(inputs, structure: orm.StructureData) -> tuple[orm.StructureData, dict]:
    """The structure pw.x sees and the ``get_builder_from_protocol`` arguments of the QE ``inputs`` (the work
    chain's ports): family, protocol, overrides with Hubbard U, metallic smearing, spin and options.

    A G-type order first runs the ``magnetic_structure`` calcfunction, so the kinds pw.x sees have provenance.
    """
    overrides = dict(input_value(inputs, 'overrides', {}) or {})
    overrides['pseudo_family'] = input_value(inputs, 'pseudo_family', DEFAULT_FAMILY)
    distance = kpoints_distance_for(inputs, structure)
    if distance is not None:
        overrides['kpoints_distance'] = distance
    mesh = explicit_kpoints(inputs, structure)
    if mesh is not None:  # PwBaseWorkChain takes `kpoints` over `kpoints_distance`
        overrides['kpoints'] = mesh
    structure, moments = magnetic_setup(inputs, structure)
    spin_type = SpinType.NONE if moments is None else SpinType.COLLINEAR
    hubbard = {kind.name: value for element, value in (input_value(inputs, 'hubbard_u', {}) or {}).items()
               for kind in structure.kinds if kind.symbol == element}
    if hubbard:
        # pw.x 6.x syntax; aiida-quantumespresso maps kind names to Hubbard_U(i) indices.
        system = {'lda_plus_u': True, 'hubbard_u': hubbard}
        overrides = recursive_merge(overrides, {'pw': {'parameters': {'SYSTEM': system}}})
    return structure, {'protocol': input_value(inputs, 'protocol', 'balanced'), 'overrides': overrides,
                       'electronic_type': ElectronicType.METAL, 'spin_type': spin_type,
                       'initial_magnetic_moments': moments, 'options': input_value(inputs, 'options', None)}


def pw_builder(inputs, structure: orm.StructureData):
    """The ``PwBaseWorkChain`` builder that labels ``structure`` with the QE ``inputs``."""
    structure, arguments = pw_protocol_arguments(inputs, structure)
    return PwBaseWorkChain.get_builder_from_protocol(inputs['code'], structure, **arguments)


def pw_relax_builder(inputs, structure: orm.StructureData, relax_cell: bool = True, meta_convergence: bool = True,
                     fmax: float | None = None):
    """A ``PwRelaxWorkChain`` (vc-relax of cell and positions, or relax of positions; pw.x keeps the space group)
    with the settings of the labels: the QE ``inputs`` overrides apply to its pw.x runs. Its optional coarse initial
    relaxation is left out: the benchmarks start from structures that are already near a minimum. Without
    ``meta_convergence`` one vc-relax is kept as it ends (aiida-quantumespresso otherwise reruns it from the new cell
    until the volume changes by less than 1 %, which at a low cutoff's Pulay stress may never happen). ``fmax``
    (eV/Å) replaces the protocol's force threshold (``forc_conv_thr``): the physics card relaxes both its sides to the
    same one."""
    from aiida_quantumespresso.common.types import RelaxType
    from aiida_quantumespresso.workflows.pw.relax import PwRelaxWorkChain

    structure, arguments = pw_protocol_arguments(inputs, structure)
    base = arguments.pop('overrides')
    if fmax is not None:
        from ase.units import Bohr, Ry

        base = recursive_merge(base, {'pw': {'parameters': {'CONTROL': {'forc_conv_thr': fmax / (Ry / Bohr)}}}})
    arguments['overrides'] = {'base_relax': base, 'base_init_relax': base}  # the latter is built, then dropped
    relax_type = RelaxType.POSITIONS_CELL if relax_cell else RelaxType.POSITIONS
    builder = PwRelaxWorkChain.get_builder_from_protocol(inputs['code'], structure, relax_type=relax_type,
                                                         **arguments)
    builder.pop('base_init_relax', None)
    builder.meta_convergence = orm.Bool(meta_convergence)
    return builder


class QeLabelWorkChain(PerFrameLabelWorkChain):
    """Label structures with pw.x (one ``PwBaseWorkChain`` each) and return one TrainingSet."""

    _PROGRAM = 'pw.x'
    training_set_function = training_set_from_pw

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('code', valid_type=orm.AbstractCode, help='A `quantumespresso.pw` code.')
        spec.input('pseudo_family', valid_type=orm.Str, default=lambda: orm.Str(DEFAULT_FAMILY),
                   help='aiida-pseudo family label (default: the PBEsol pslibrary family `ferromlip pseudos install` '
                        'builds); its recommended cutoffs are used unless `overrides` give both.')
        spec.input('protocol', valid_type=orm.Str, default=lambda: orm.Str('balanced'),
                   help=f'aiida-quantumespresso PwBaseWorkChain protocol: {", ".join(QE_PROTOCOLS)}.')
        spec.input('overrides', valid_type=orm.Dict, required=False,
                   help='Overrides of the PwBaseWorkChain protocol (kpoints_distance, pw.parameters, ...).')
        spec.inputs.validator = validate_inputs

    def frame_builder(self, structure):
        return pw_builder(self.inputs, structure)

    @staticmethod
    def label_sources(node):
        if 'output_trajectory' not in node.outputs:
            return None
        return {'parameters': node.outputs.output_parameters, 'trajectory': node.outputs.output_trajectory}

    @staticmethod
    def frame_cost(node):
        return pw_cost(node)


def pw_cost(workchain: orm.WorkChainNode) -> dict:
    """Wall time and SCF iterations summed over every pw.x run of a frame (failed attempts cost time too); restarts
    are the runs beyond the first of each PwBaseWorkChain."""
    calculations = called_calculations(workchain)
    wall, iterations = 0.0, 0
    for calculation in calculations:
        if 'output_parameters' in calculation.outputs:
            parameters = calculation.outputs.output_parameters
            wall += float(parameters.get('wall_time_seconds') or 0.0)
            iterations += int(parameters.get('total_number_of_scf_iterations') or 0)
    workflows = {c.caller.pk for c in calculations if c.caller is not None}  # one PwBaseWorkChain per pw.x task
    return {'pw_pks': [c.pk for c in calculations], 'wall_time_s': wall if calculations else None,
            'scf_iterations': iterations, 'restarts': max(len(calculations) - max(len(workflows), 1), 0)}
