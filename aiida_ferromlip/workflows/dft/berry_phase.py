"""Berry-phase polarization labels from Quantum ESPRESSO (BaTiO3-GAP paper, Supplementary Note 3).

``PwBerryPhaseWorkChain`` (one frame): a pw.x SCF through aiida-quantumespresso's ``PwBaseWorkChain`` with the
settings of the QE labels (smeared occupations, so a metal converges and shows itself); the gap between the
highest occupied and lowest empty band over the SCF's k-mesh; a frame with less than ``min_band_gap_ev`` is refused
as metallic (a Berry-phase polarization needs an insulator). Otherwise three pw.x ``nscf`` runs with ``lberry``, one
per reciprocal lattice vector (``gdir`` 1, 2, 3), on strings of ``nppstr`` k-points, restarting from the SCF
charge density; their phases are read by the ``berry_phases`` calcfunction (pw.x's Berry-phase block is parsed by
``analysis.berry_phase``: aiida-quantumespresso's parser skips it).

``BerryPhaseWorkChain`` (a set of frames): a centrosymmetric ``reference`` structure and every frame through
``PwBerryPhaseWorkChain``, then the ``berry_phase_labels`` calcfunction brings each frame's phases to the branch of
the Born-effective-charge model around the reference (``analysis.berry_phase.unwrap_dipole``) and returns the cell
dipoles (e·Å, relative to the reference) with the frames' SCF energies, forces and stress as a TrainingSet: the
``training_set`` and ``dipoles`` a ``PolarizationModelWorkChain`` takes. Frames whose branch is ambiguous are
flagged in ``branch_report`` and left out of both.
"""

from __future__ import annotations

import pathlib

import numpy as np
from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction
from aiida_quantumespresso.calculations.pw import PwCalculation

from aiida_ferromlip.analysis.berry_phase import (
    BerryPhaseOutputError,
    band_gap,
    parse_berry_phase,
    reference_phases,
    unwrap_dipole,
)
from aiida_ferromlip.calculations.base import PROTOCOLS, ProtocolMixin
from aiida_ferromlip.data.polarization import born_dipoles
from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.exit_codes import declare
from aiida_ferromlip.pseudos import DEFAULT_FAMILY
from aiida_ferromlip.protocols import default_inputs, merged_settings
from aiida_ferromlip.workflows.dft.per_frame import PerFrameLabelWorkChain, called_calculations, input_value
from aiida_ferromlip.workflows.dft.qe import (
    QE_PROTOCOLS,
    pw_cost,
    load_family,
    pw_builder,
    pw_frames,
    qe_input_problems,
)

DEFAULTS = default_inputs('berry_phase')['parameters']
REFERENCE_KEY = 'reference'
DIRECTIONS = (1, 2, 3)


def settings_problems(parameters: orm.Dict | None) -> list[str]:
    try:
        settings = merged_settings(parameters, DEFAULTS, 'Berry-phase')
    except ValueError as exception:
        return [str(exception)]
    problems = []
    if not isinstance(settings['nppstr'], int) or settings['nppstr'] < 2:
        problems.append(f'`nppstr` must be an integer of at least 2 k-points per string, got {settings["nppstr"]!r}')
    if settings['min_band_gap_ev'] < 0:
        problems.append(f'`min_band_gap_ev` must be >= 0, got {settings["min_band_gap_ev"]}')
    if not 0 < settings['branch_tolerance'] < 0.5:
        problems.append(f'`branch_tolerance` is a fraction of the polarization quantum in (0, 0.5), got '
                        f'{settings["branch_tolerance"]}: at 0.5 or more every branch is accepted')
    return problems


def berry_input_problems(inputs, structures: dict) -> list[str]:
    """What makes a Berry-phase run of ``structures`` impossible, found before pw.x runs: the QE label checks, spin
    polarisation (not supported here), an odd electron count (a metal for spin-degenerate bands)."""
    problems = settings_problems(inputs.get('parameters'))
    qe_problems = qe_input_problems(inputs, structures)
    if qe_problems:
        return problems + [qe_problems]
    magnetism = input_value(inputs, 'magnetism', {}) or {}
    if any(setting.get('order', 'none') != 'none' for setting in magnetism.values()):
        problems.append('spin-polarised Berry phases are not supported by this work chain (magnetism was given): '
                        'only spin-unpolarised insulators')
    family = load_family(input_value(inputs, 'pseudo_family', DEFAULT_FAMILY))
    valence = {element: family.get_pseudo(element).z_valence for element in family.elements}
    for key, structure in structures.items():
        electrons = sum(valence[symbol] for symbol in structure.get_ase().get_chemical_symbols())
        if electrons % 2:
            problems.append(f'structure `{key}` ({structure.get_formula()}) has {electrons} valence electrons: an odd '
                            f'count cannot fill spin-degenerate bands, so it is a metal without a Berry-phase '
                            f'polarization')
    return problems


def validate_frame_inputs(inputs, _):
    if 'structure' not in inputs:
        return None
    return '\n'.join(berry_input_problems(inputs, {'structure': inputs['structure']})) or None


class PwBerryPhaseWorkChain(WorkChain):
    """One frame: pw.x SCF, gap check, three ``lberry`` nscf runs; the phases as a Dict."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('structure', valid_type=orm.StructureData)
        spec.input('code', valid_type=orm.AbstractCode, help='A `quantumespresso.pw` code.')
        spec.input('pseudo_family', valid_type=orm.Str, default=lambda: orm.Str(DEFAULT_FAMILY))
        spec.input('protocol', valid_type=orm.Str, default=lambda: orm.Str('balanced'),
                   help=f'aiida-quantumespresso PwBaseWorkChain protocol: {", ".join(QE_PROTOCOLS)}.')
        spec.input('overrides', valid_type=orm.Dict, required=False, help='Overrides of the PwBaseWorkChain protocol.')
        spec.input('hubbard_u', valid_type=orm.Dict, required=False, help='Hubbard U in eV per element.')
        spec.input('options', valid_type=orm.Dict, required=False, help='metadata.options of every pw.x run.')
        spec.input('parameters', valid_type=orm.Dict, required=False, help=f'Settings: {sorted(DEFAULTS)}.')
        spec.inputs.validator = validate_frame_inputs
        spec.outline(cls.run_scf, cls.inspect_scf, cls.run_berry, cls.collect)
        spec.output('scf_parameters', valid_type=orm.Dict, help='The SCF output parameters (energy).')
        spec.output('scf_trajectory', valid_type=orm.TrajectoryData, help='The SCF forces and stress.')
        spec.output('berry_phase', valid_type=orm.Dict,
                    help='Per direction the total phase (fraction of a_d) and what pw.x printed; the band gap.')
        declare(spec, 'ERROR_SCF_FAILED', 'ERROR_METALLIC', 'ERROR_BERRY_FAILED')

    def settings(self) -> dict:
        return merged_settings(self.inputs.get('parameters'), DEFAULTS, 'Berry-phase')

    def run_scf(self):
        builder = pw_builder(self.inputs, self.inputs.structure)
        builder.metadata.call_link_label = 'scf'
        return ToContext(scf=self.submit(builder))

    def inspect_scf(self):
        scf = self.ctx.scf
        if not scf.is_finished_ok:
            return self.exit_codes.ERROR_SCF_FAILED.format(pk=scf.pk, why=scf.exit_message or 'excepted or killed')
        gap = band_gap(scf.outputs.output_band.get_bands(), scf.outputs.output_parameters['number_of_electrons'])
        minimum = self.settings()['min_band_gap_ev']
        if gap < minimum:
            return self.exit_codes.ERROR_METALLIC.format(gap=gap, minimum=minimum)
        self.report(f'SCF gap {gap:.2f} eV: Berry phases along the three reciprocal vectors')
        return None

    def run_berry(self):
        for gdir in DIRECTIONS:
            builder = berry_builder(self.inputs, self.ctx.scf, gdir, self.settings()['nppstr'])
            builder.metadata.call_link_label = f'berry_gdir_{gdir}'
            self.to_context(**{f'berry_{gdir}': self.submit(builder)})

    def collect(self):
        retrieved = {}
        for gdir in DIRECTIONS:
            node = self.ctx[f'berry_{gdir}']
            if not node.is_finished_ok or 'retrieved' not in node.outputs:
                return self.exit_codes.ERROR_BERRY_FAILED.format(
                    gdir=gdir, why=f'{node.process_label}<{node.pk}> {node.exit_message or "excepted or killed"}')
            retrieved[f'gdir_{gdir}'] = node.outputs.retrieved
        try:
            phases = berry_phases(self.ctx.scf.outputs.output_band, self.ctx.scf.outputs.output_parameters,
                                  **retrieved)
        except BerryPhaseOutputError as exception:
            return self.exit_codes.ERROR_BERRY_FAILED.format(gdir='?', why=str(exception))
        self.out('scf_parameters', self.ctx.scf.outputs.output_parameters)
        self.out('scf_trajectory', self.ctx.scf.outputs.output_trajectory)
        self.out('berry_phase', phases)
        self.report('phases along a1, a2, a3: ' + ', '.join(f'{p:+.5f}' for p in phases['phases']))
        return None


def berry_builder(inputs, scf: orm.WorkChainNode, gdir: int, nppstr: int):
    """The ``nscf`` PwBaseWorkChain of the Berry phase along reciprocal vector ``gdir``: the SCF's settings with
    fixed occupations (the occupied manifold only), the SCF's k-mesh with ``nppstr`` points along ``gdir``, restarted
    from the SCF's charge density."""
    builder = pw_builder(inputs, scf.inputs.pw.structure)
    parameters = builder.pw.parameters.get_dict()
    control = parameters.setdefault('CONTROL', {})
    control.update({'calculation': 'nscf', 'lberry': True, 'gdir': gdir, 'nppstr': nppstr})
    for key in ('tstress', 'tprnfor'):  # nothing to compute for a fixed density
        control.pop(key, None)
    system = parameters.setdefault('SYSTEM', {})
    for key in ('smearing', 'degauss', 'nbnd'):
        system.pop(key, None)
    system['occupations'] = 'fixed'
    builder.pw.parameters = orm.Dict(parameters)
    mesh, offset = called_calculations(scf)[-1].inputs.kpoints.get_kpoints_mesh()
    mesh = list(mesh)
    mesh[gdir - 1] = nppstr  # pw.x requires the mesh along gdir to be the string itself
    kpoints = orm.KpointsData()
    kpoints.set_kpoints_mesh(mesh, offset)
    builder.kpoints = kpoints
    builder.pop('kpoints_distance', None)
    builder.pop('kpoints_force_parity', None)
    builder.pw.parent_folder = scf.outputs.remote_folder
    return builder


@calcfunction
def berry_phases(bands: orm.BandsData, scf_parameters: orm.Dict, **retrieved: orm.FolderData) -> orm.Dict:
    """The total phases along a1, a2, a3 (fractions of each lattice vector) read from the ``lberry`` pw.x outputs
    ``gdir_1``..``gdir_3``, what pw.x printed for each, and the SCF band gap."""
    runs = {}
    for name, folder in sorted(retrieved.items()):
        parsed = parse_berry_phase(folder.base.repository.get_object_content(PwCalculation._DEFAULT_OUTPUT_FILE))
        if f'gdir_{parsed["gdir"]}' != name:
            raise BerryPhaseOutputError(f'the output passed as `{name}` is a Berry phase along gdir {parsed["gdir"]}')
        runs[name] = parsed
    phases = [runs[f'gdir_{gdir}']['phase'] for gdir in DIRECTIONS]
    electrons = scf_parameters['number_of_electrons']
    return orm.Dict({'phases': phases, 'runs': runs, 'band_gap_ev': band_gap(bands.get_bands(), electrons),
                     'number_of_electrons': electrons})


@calcfunction
def berry_phase_labels(frames: orm.Dict, parameters: orm.Dict, **outputs) -> dict:
    """Cell dipoles on the Born-charge branch for every frame but the reference, with the frames' SCF labels.

    ``outputs``: ``parameters_<i>``, ``trajectory_<i>`` (SCF) and ``berry_<i>`` (``berry_phases``) per position
    ``i`` of ``frames['keys']``, one of which is the reference. Returns ``training_set`` and ``dipoles`` of the
    frames whose branch is clear (absent if none is), and ``branch_report``."""
    settings = merged_settings(parameters, DEFAULTS, 'Berry-phase')
    meta = frames.get_dict()
    reference = reference_phases(outputs[f'berry_{meta["keys"].index(REFERENCE_KEY)}']['phases'])
    positions = [i for i, key in enumerate(meta['keys']) if key != REFERENCE_KEY]
    keys = [meta['keys'][i] for i in positions]
    atoms_list, origins = pw_frames(meta, outputs, positions)
    born, source = born_dipoles(atoms_list)
    rows, flagged, accepted, unwrapped = {}, {}, [], []
    for j, (position, key, atoms) in enumerate(zip(positions, keys, atoms_list)):
        berry = outputs[f'berry_{position}'].get_dict()
        result = unwrap_dipole(atoms.cell.array, berry['phases'], reference, born[j], settings['branch_tolerance'])
        unwrapped.append(result['dipole'])
        rows[key] = {'dipole_e_angstrom': result['dipole'].tolist(), 'born_dipole_e_angstrom': born[j].tolist(),
                     'branch': result['branch'].tolist(), 'residual_quanta': result['residual'].tolist(),
                     'phases': berry['phases'], 'band_gap_ev': berry['band_gap_ev']}
        if result['ok']:
            accepted.append(j)
        else:
            flagged[key] = (f'the Berry-phase dipole differs from the Born-charge model by '
                            f'{np.round(result["residual"], 3).tolist()} quanta along a1..a3 (tolerance '
                            f'{settings["branch_tolerance"]}): the branch is ambiguous, the frame is not used')
    report = orm.Dict({'reference_phases': reference.tolist(), 'frames': rows, 'flagged': flagged,
                       'born_charges': source, 'settings': settings})
    if not accepted:
        return {'branch_report': report}
    dipoles = orm.ArrayData()
    dipoles.set_array('dipoles', np.array(unwrapped)[accepted])
    dipoles.set_array('born_dipoles', born[accepted])
    dipoles.base.attributes.set_many({
        'units': 'e*angstrom', 'frame_keys': [keys[j] for j in accepted],
        'source': f'Berry phase (pw.x lberry, {settings["nppstr"]} k-points per string) relative to a '
                  f'centrosymmetric reference, branch from {source}'})
    training_set = TrainingSet(frames=[atoms_list[j] for j in accepted], origins=[origins[j] for j in accepted])
    return {'training_set': training_set, 'dipoles': dipoles, 'branch_report': report}


def validate_inputs(inputs, _):
    if 'structures' not in inputs or 'reference' not in inputs:
        return None
    structures = dict(inputs['structures'])
    if REFERENCE_KEY in structures:
        return f'`{REFERENCE_KEY}` is the key of the reference structure: name that frame otherwise'
    if not structures:
        return 'no structures were given'
    problems = berry_input_problems(inputs, {**structures, REFERENCE_KEY: inputs['reference']})
    reference = inputs['reference'].get_ase()
    for key, structure in structures.items():
        atoms = structure.get_ase()
        if sorted(atoms.get_chemical_symbols()) != sorted(reference.get_chemical_symbols()):
            problems.append(f'structure `{key}` ({structure.get_formula()}) is not made of the reference\'s atoms '
                            f'({inputs["reference"].get_formula()}): its phases cannot be compared with the reference\'s')
    try:
        born_dipoles([s.get_ase() for s in structures.values()])
    except (ValueError, IndexError) as exception:
        problems.append(f'the Born-charge model that chooses the branch needs perovskite frames: {exception}')
    return '\n'.join(problems) if problems else None


class BerryPhaseWorkChain(ProtocolMixin, PerFrameLabelWorkChain):
    """Berry-phase cell dipoles (one branch) and SCF labels of a set of frames, for a polarization model."""

    _PROGRAM = 'pw.x (SCF + Berry phase)'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        # hubbard_u and options are the base class's ports already
        spec.expose_inputs(PwBerryPhaseWorkChain, exclude=('structure', 'metadata', 'hubbard_u', 'options'))
        spec.input('reference', valid_type=orm.StructureData,
                   help='A centrosymmetric (non-polar) structure with the frames\' atoms, e.g. the cubic cell: the '
                        'zero of the dipoles and of the Born-charge model that chooses their branch.')
        spec.inputs.validator = validate_inputs
        spec.output('dipoles', valid_type=orm.ArrayData, required=False,
                    help='Array `dipoles` [frames of `training_set`, 3], e·Å; `born_dipoles` beside it.')
        spec.output('branch_report', valid_type=orm.Dict, required=False,
                    help='Per frame: phases, branch, Berry - Born residual, gap; the flagged frames and why.')
        declare(spec, 'ERROR_REFERENCE_FAILED', 'ERROR_NO_DIPOLES')

    @classmethod
    def get_protocol_filepath(cls) -> pathlib.Path:
        return PROTOCOLS / 'berry_phase.yaml'

    @classmethod
    def get_builder_from_protocol(cls, code: orm.AbstractCode, structures: dict, reference: orm.StructureData,
                                  protocol: str | None = None, overrides: dict | None = None):
        """Builder for the Berry-phase dipoles of ``structures`` (protocols fast | moderate); ``overrides`` are
        merged, never mutated."""
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        builder.code = code
        builder.structures = dict(structures)
        builder.reference = reference
        builder.pseudo_family = orm.Str(inputs['pseudo_family'])
        builder.protocol = orm.Str(inputs['protocol'])
        builder.overrides = orm.Dict(inputs['overrides'])
        builder.parameters = orm.Dict(inputs['parameters'])
        builder.max_concurrent = orm.Int(inputs['max_concurrent'])
        if inputs.get('options'):
            builder.options = orm.Dict(inputs['options'])
        return builder

    def frame_structures(self):
        return {**self.inputs.structures, REFERENCE_KEY: self.inputs.reference}

    def frame_builder(self, structure):
        builder = PwBerryPhaseWorkChain.get_builder()
        for key, value in self.exposed_inputs(PwBerryPhaseWorkChain).items():
            builder[key] = value
        for key in ('hubbard_u', 'options'):
            if key in self.inputs:
                builder[key] = self.inputs[key]
        builder.structure = structure
        return builder

    @staticmethod
    def label_sources(node):
        if 'berry_phase' not in node.outputs:
            return None
        return {'parameters': node.outputs.scf_parameters, 'trajectory': node.outputs.scf_trajectory,
                'berry': node.outputs.berry_phase}

    @staticmethod
    def frame_cost(node):
        return pw_cost(node)

    training_set_function = berry_phase_labels

    def collect_inputs(self):
        return {'parameters': self.inputs.get('parameters', orm.Dict(DEFAULTS))}

    def collect(self):
        node = self.ctx[f'frame_{self.ctx.frame_keys.index(REFERENCE_KEY):04d}']
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_REFERENCE_FAILED.format(
                detail=f'{node.process_label}<{node.pk}> failed: [{node.exit_status}] {node.exit_message}')
        try:
            reference_phases(node.outputs.berry_phase['phases'])
        except ValueError as exception:
            return self.exit_codes.ERROR_REFERENCE_FAILED.format(detail=str(exception))
        failed = super().collect()
        if failed:
            return failed
        report = self.outputs['branch_report'].get_dict()
        for key, why in report['flagged'].items():
            self.report(f'frame `{key}` flagged: {why}')
        if 'dipoles' not in self.outputs:
            return self.exit_codes.ERROR_NO_DIPOLES.format(flagged=report['flagged'])
        self.report(f'{len(self.outputs["dipoles"].get_array("dipoles"))} Berry-phase dipole(s) on one branch; '
                    f'{len(report["flagged"])} frame(s) flagged')
        return None
