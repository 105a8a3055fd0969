"""``VaspOnTheFlyWorkChain``: VASP's Bayesian on-the-fly training MD (``ML_LMLFF``) through aiida-vasp, the minimalist paper's
way, and its training set (``ML_ABN``) as a TrainingSet.

The minimalist paper (Sec. II.A, II.C) grew every training set inside VASP: MD of 10000 steps of 2 fs with a linear 10 -> 300 K
ramp from a known polymorph, VASP's default descriptors, a Bayesian error threshold of 0.002 updated
automatically; then a second run from another polymorph that continues the same training set (R3c then Pnma for
BiFeO3 and PbZrO3, P2_1/c then P4_2/nmc for HfO2; BaTiO3 once, from R3m). This work chain runs those stages in
order, each an aiida-vasp ``VaspWorkChain``:

* stage 0 from the first structure; every later stage copies the previous stage's ``ML_ABN`` from its remote
  folder (aiida-vasp's ``restart_folder`` + ``ADDITIONAL_REMOTE_COPY_LIST``) and renames it ``ML_AB`` before VASP
  starts (``prepend_text``), which VASP reads as a continuation of the training (``ML_MODE = train``);
* the electronic settings are the minimalist paper's labelling ones (``vasp_label.MINIMALIST_INCAR``: PBEsol, 500 eV, PAW
  valences, U = 4 eV on Fe with G-type order for BiFeO3) and its k-meshes (3x3x3; 2x2x2 for BiFeO3);
* outputs: the final ``ML_ABN`` and ``ML_FFN`` (VASP's force field) as files, each stage's ``ML_ABN``, and the
  TrainingSet read from the final ``ML_ABN`` (``data.ml_ab.training_set_from_ml_ab``), which GAP/Allegro fits,
  the loop and the benchmarks take like any other.

VASP is licensed: nothing here runs it. The INCAR/KPOINTS/POSCAR each stage would get are written by aiida-vasp's
own writers in the tests (:func:`stage_input_files`). parsevasp 3.4 does not know VASP 6's ``ML_*`` tags, so tag
validation is switched off for these runs (``skip_parameters_validation``).
"""

from __future__ import annotations

import io
import pathlib

from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction, while_

from aiida_ferromlip.calculations.base import PROTOCOLS, ProtocolMixin
from aiida_ferromlip.data.ml_ab import training_set_from_ml_ab
from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.exit_codes import declare
from aiida_ferromlip.materials import MINIMALIST_STAGES
from aiida_ferromlip.workflows.dft.per_frame import input_value
from aiida_ferromlip.workflows.dft.vasp import define_vasp_ports, input_files, vasp_input_problems, vasp_inputs

#: The minimalist paper's stages per material (the first starts the training set, the next ones continue it), k-point meshes
#: of its 40-atom (24 for HfO2) cells, and the BiFeO3 extras.
MINIMALIST_MATERIALS = {
    'BaTiO3': {'stages': MINIMALIST_STAGES['BaTiO3'], 'kpoints_mesh': [3, 3, 3]},
    'PbZrO3': {'stages': MINIMALIST_STAGES['PbZrO3'], 'kpoints_mesh': [3, 3, 3]},
    'HfO2': {'stages': MINIMALIST_STAGES['HfO2'], 'kpoints_mesh': [3, 3, 3]},
    'BiFeO3': {'stages': MINIMALIST_STAGES['BiFeO3'], 'kpoints_mesh': [2, 2, 2], 'hubbard_u': {'Fe': 4.0},
               'magnetism': {'Fe': {'order': 'g-type', 'moment': 4.0}}},
}

#: Files VASP's machine learning writes: the training set, the force field, the log.
ML_FILES = ['ML_ABN', 'ML_FFN', 'ML_LOGFILE']


def stage_keys(structures) -> list[str]:
    """The stages run in the order of their keys (``stage_0_R3c``, ``stage_1_Pnma``, ...)."""
    return sorted(structures)


def stage_inputs(inputs, structure: orm.StructureData, previous_remote: orm.RemoteData | None = None) -> dict:
    """The ``VaspWorkChain`` inputs of one stage: the minimalist paper's labelling inputs (``vasp_label.vasp_inputs``) with the
    on-the-fly MD tags over them, the explicit k-mesh, and — after the first stage — the previous ``ML_ABN``."""
    incar = dict(input_value(inputs, 'incar', {}) or {})
    gamma = float(incar.pop('langevin_gamma', 10.0))
    plain = {key: inputs.get(key) for key in ('code', 'potential_family', 'potential_mapping', 'magnetism',
                                              'hubbard_u', 'kpoints_distance', 'options') if inputs.get(key) is not None}
    plain['incar'] = orm.Dict(incar)
    result = vasp_inputs(plain, structure)
    tags = result['parameters'].get_dict()['incar']
    if tags.get('mdalgo') == 3:  # Langevin: one friction per species of the POSCAR (kinds: Fe1/Fe2 are two)
        tags['langevin_gamma'] = [gamma] * len(result['structure'].kinds)
    result['parameters'] = orm.Dict({'incar': tags})
    mesh = input_value(inputs, 'kpoints_mesh', None)
    if mesh:
        kpoints = orm.KpointsData()
        kpoints.set_cell_from_structure(result['structure'])
        kpoints.set_kpoints_mesh(list(mesh), offset=[0, 0, 0])  # Γ-centred, as the minimalist paper
        result['kpoints'] = kpoints
    settings = result['settings'].get_dict()
    settings.update({'skip_parameters_validation': True, 'ADDITIONAL_RETRIEVE_LIST': ML_FILES})
    options = dict(input_value(inputs, 'options', {}) or {})
    if previous_remote is not None:
        result['restart_folder'] = previous_remote
        settings['ADDITIONAL_REMOTE_COPY_LIST'] = ['ML_ABN']
        options['prepend_text'] = '\n'.join(filter(None, [options.get('prepend_text'), 'mv ML_ABN ML_AB']))
    result['settings'] = orm.Dict(settings)
    if options:
        result['calc'] = {'metadata': {'options': options}}
    result['clean_workdir'] = orm.Bool(False)  # the next stage copies ML_ABN from this work directory
    return result


def stage_input_files(inputs, structure: orm.StructureData) -> dict[str, str]:
    """INCAR, KPOINTS and POSCAR of a stage as aiida-vasp writes them (no POTCAR: licensed)."""
    return input_files(stage_inputs(inputs, structure))


def on_the_fly_problems(inputs) -> str | None:
    """Why the stages cannot run: the labelling checks (code, POTCARs, structures, magnetism), MD settings."""
    problems = []
    common = vasp_input_problems(inputs, inputs.get('structures', {}))
    if common:
        problems.append(common)
    incar = input_value(inputs, 'incar', {}) or {}
    if not incar.get('ml_lmlff'):
        problems.append('`incar` must switch on machine learning (`ml_lmlff: true`): this is an on-the-fly run')
    if int(incar.get('nsw', 0)) < 1 or int(incar.get('ibrion', -1)) != 0:
        problems.append('`incar` must run MD (`ibrion: 0`, `nsw` > 0)')
    return '\n'.join(problems) if problems else None


def validate_inputs(inputs, namespace):
    if 'structures' not in namespace or 'incar' not in namespace:
        return None
    return on_the_fly_problems(inputs)


@calcfunction
def retrieved_file(retrieved: orm.FolderData, filename: orm.Str) -> orm.SinglefileData:
    """One file of a retrieved folder as its own node (the ML_ABN a stage wrote, with provenance)."""
    return orm.SinglefileData(io.BytesIO(retrieved.get_object_content(filename.value, mode='rb')),
                              filename=filename.value)


class VaspOnTheFlyWorkChain(ProtocolMixin, WorkChain):
    """VASP on-the-fly training MD in stages (one per polymorph), continuing one ML_AB; returns it as TrainingSet."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        define_vasp_ports(spec)
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True,
                             help='One start structure per stage; stages run in key order (stage_0_..., ...).')
        spec.input('incar', valid_type=orm.Dict, help='ML and MD tags over the minimalist paper\'s labelling INCAR '
                                                      '(`langevin_gamma`: one value, applied to every species).')
        spec.input('kpoints_mesh', valid_type=orm.List, required=False, help='Γ-centred mesh (else by distance).')
        spec.input('kpoints_distance', valid_type=orm.Float, default=lambda: orm.Float(0.3),
                   help='Γ-centred mesh density, Å⁻¹ with 2π, when no `kpoints_mesh` is given.')
        spec.input('hubbard_u', valid_type=orm.Dict, required=False, help='Hubbard U in eV per element.')
        spec.input('magnetism', valid_type=orm.Dict, required=False, help='Magnetic order per element.')
        spec.input('options', valid_type=orm.Dict, required=False, help='Scheduler options of every stage.')
        spec.inputs.validator = validate_inputs
        spec.outline(cls.setup, while_(cls.has_stage)(cls.run_stage, cls.inspect_stage), cls.results)
        spec.output('ml_ab', valid_type=orm.SinglefileData, help='The final training set (ML_ABN of the last stage).')
        spec.output('ml_ff', valid_type=orm.SinglefileData, required=False, help='VASP\'s force field (ML_FFN).')
        spec.output_namespace('stage_ml_ab', valid_type=orm.SinglefileData, dynamic=True,
                              help='The ML_ABN after each stage.')
        spec.output('training_set', valid_type=TrainingSet, help='The final ML_ABN as a TrainingSet.')
        declare(spec, 'ERROR_STAGE_FAILED', 'ERROR_NO_ML_AB')

    @classmethod
    def get_protocol_filepath(cls) -> pathlib.Path:
        return PROTOCOLS / 'vasp_on_the_fly.yaml'

    @classmethod
    def get_builder_from_protocol(cls, code: orm.AbstractCode | None, material: str | None = None,
                                  structures: dict | None = None, protocol: str | None = None,
                                  overrides: dict | None = None, *, potential_family: str | None = None):
        """Builder for the minimalist paper's stages of ``material`` (its polymorphs, k-mesh, U and magnetism), or for the
        given ``structures`` (stage order = key order); ``overrides`` merged into a copy of the protocol."""
        from aiida_ferromlip.materials import MATERIALS, polymorphs

        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        if code is not None:
            builder.code = code
        if potential_family:
            builder.potential_family = orm.Str(potential_family)
        incar = {**inputs['incar'], 'langevin_gamma': inputs['langevin_gamma']}
        builder.incar = orm.Dict(incar)
        if structures is None:
            if material not in MINIMALIST_MATERIALS:
                raise ValueError(f'give `structures`, or a `material` among {", ".join(sorted(MATERIALS))}')
            settings = MINIMALIST_MATERIALS[material]
            cells = polymorphs(material, 'training')
            structures = {f'stage_{k}_{phase.replace("/", "")}': orm.StructureData(ase=cells[phase])
                          for k, phase in enumerate(settings['stages'])}
            builder.kpoints_mesh = orm.List(settings['kpoints_mesh'])
            for key in ('hubbard_u', 'magnetism'):
                if key in settings:
                    builder[key] = orm.Dict(settings[key])
        builder.structures = dict(structures)
        return builder

    def setup(self):
        self.ctx.stages = stage_keys(self.inputs.structures)
        self.ctx.index = 0
        self.ctx.previous = None

    def has_stage(self):
        return self.ctx.index < len(self.ctx.stages)

    def run_stage(self):
        from aiida.plugins import WorkflowFactory

        key = self.ctx.stages[self.ctx.index]
        remote = self.ctx.previous.outputs.remote_folder if self.ctx.previous is not None else None
        builder = WorkflowFactory('vasp.vasp').get_builder()
        for port, value in stage_inputs(self.inputs, self.inputs.structures[key], remote).items():
            builder[port] = value
        node = self.submit(builder)
        continued = f', continuing the ML_AB of stage {self.ctx.stages[self.ctx.index - 1]}' if remote else ''
        self.report(f'stage {key}: on-the-fly MD {node.process_label}<{node.pk}>{continued}')
        return ToContext(stage=node)

    def inspect_stage(self):
        key, node = self.ctx.stages[self.ctx.index], self.ctx.stage
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_STAGE_FAILED.format(stage=key, process=f'{node.process_label}<{node.pk}>',
                                                             message=node.exit_message or node.process_state)
        retrieved = node.outputs.retrieved
        if 'ML_ABN' not in retrieved.base.repository.list_object_names():
            return self.exit_codes.ERROR_NO_ML_AB.format(stage=key)
        self.ctx.ml_ab = retrieved_file(retrieved, orm.Str('ML_ABN'))
        self.out(f'stage_ml_ab.{key}', self.ctx.ml_ab)
        self.ctx.previous = node
        self.ctx.index += 1
        return None

    def results(self):
        self.out('ml_ab', self.ctx.ml_ab)
        retrieved = self.ctx.previous.outputs.retrieved
        if 'ML_FFN' in retrieved.base.repository.list_object_names():
            self.out('ml_ff', retrieved_file(retrieved, orm.Str('ML_FFN')))
        training_set = training_set_from_ml_ab(self.ctx.ml_ab)
        self.out('training_set', training_set)
        self.report(f'TrainingSet<{training_set.pk}>: {len(training_set)} configurations from the final ML_ABN')
