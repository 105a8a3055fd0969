"""What the benchmark workflows share: the potential judged, its jobs (``AtomsTaskCalculation``: single points,
relaxations, NEB on the computer, not in the daemon) and the reference-labeller namespace."""

from __future__ import annotations

from aiida import orm

from aiida_ferromlip.calculations.base import ProtocolMixin
from aiida_ferromlip.data.potential import POTENTIAL_TYPES
from aiida_ferromlip.exit_codes import declare
from aiida_ferromlip.protocols import PROTOCOLS, default_inputs, merged_settings  # noqa: F401  (re-exported)
from aiida_ferromlip.workflows.label.base import LabelWorkChain


def job_failed(node: orm.ProcessNode, exit_code):
    """``exit_code`` naming ``node`` and its failure when ``node`` did not finish ok, else None."""
    if node.is_finished_ok:
        return None
    return exit_code.format(detail=f'{node.process_label}<{node.pk}>: {node.exit_message or node.process_state}')


class BenchmarkProtocolMixin(ProtocolMixin):
    """A benchmark's settings come from its protocol file ``protocols/<_PROTOCOL_FILE>`` (``default_inputs.parameters``
    and named protocols), the one place its defaults live; ``default_parameters`` reads them."""

    _PROTOCOL_FILE: str

    @classmethod
    def get_protocol_filepath(cls):
        return PROTOCOLS / cls._PROTOCOL_FILE

    @classmethod
    def default_parameters(cls) -> dict:
        return default_inputs(cls._PROTOCOL_FILE.removesuffix('.yaml'))['parameters']


class PotentialTaskMixin(BenchmarkProtocolMixin):
    """The potential judged and its jobs: ``potential``, ``task_code`` (a ``ferromlip.atoms_task`` code) and
    ``task_options`` ports, and ``submit_task``."""

    @classmethod
    def define_potential_task(cls, spec) -> None:
        spec.input('potential', valid_type=POTENTIAL_TYPES, help='The potential to judge.')
        spec.input('task_code', valid_type=orm.AbstractCode,
                   help="A ferromlip.atoms_task code (ferromlip-task): runs the potential's relaxations, NEB and "
                        'single points as jobs.')
        spec.input('task_options', valid_type=orm.Dict, required=False, help='metadata.options of the task job.')
        declare(spec, 'ERROR_POTENTIAL_JOB_FAILED')

    def submit_task(self, structures: dict, task: dict, name: str):
        """Run ``task`` (``{'task': ..., settings}``) on ``structures`` with the potential; the job lands in
        ``ctx.task``."""
        from aiida_ferromlip.calculations.atoms_task import AtomsTaskCalculation

        inputs = {'code': self.inputs.task_code, 'model': self.inputs.potential, 'structures': dict(structures),
                  'task': orm.Dict(task), 'metadata': {'call_link_label': name}}
        if 'task_options' in self.inputs:
            inputs['metadata']['options'] = self.inputs.task_options.get_dict()
        node = self.submit(AtomsTaskCalculation, **inputs)
        self.report(f'{task["task"]} on {len(structures)} structure(s) with the potential: {node.process_label}<{node.pk}>')
        return self.to_context(task=node)

    def task_failed(self):
        """The exit code when the potential's job failed, else None."""
        return job_failed(self.ctx.task, self.exit_codes.ERROR_POTENTIAL_JOB_FAILED)


class ReferenceMixin(PotentialTaskMixin):
    """What the benchmark workflows share: the potential judged and its jobs, their parameters, and a `reference`
    namespace that is a LabelWorkChain's (any engine), built from its protocol."""

    @classmethod
    def define_benchmark(cls, spec) -> None:
        cls.define_potential_task(spec)
        spec.input('parameters', valid_type=orm.Dict, required=False,
                   help=f'Settings (protocols/{cls._PROTOCOL_FILE}): {sorted(cls.default_parameters())}.')
        spec.expose_inputs(LabelWorkChain, namespace='reference', exclude=('structures',),
                           namespace_options={'help': 'How the reference labels are made (any engine).'})

    def submit_reference(self, structures: dict):
        """Label ``structures`` with the reference engine; the LabelWorkChain lands in ``ctx.reference``."""
        inputs = self.exposed_inputs(LabelWorkChain, namespace='reference')
        inputs['structures'] = dict(structures)
        return self.to_context(reference=self.submit(LabelWorkChain, **inputs))

    @classmethod
    def get_builder_from_protocol(cls, reference_code: orm.AbstractCode, task_code: orm.AbstractCode, potential,
                                  protocol: str | None = None, overrides: dict | None = None, *,
                                  engine: str = 'reference', label_protocol: str = 'fast', **inputs):
        """Builder judging ``potential`` (its jobs on ``task_code``) against ``engine`` on ``reference_code``, its
        ``parameters`` from the benchmark's protocol with ``overrides`` (``{'parameters': {...}}``) merged without
        mutation; ``inputs`` fill the rest (e.g. ``structure``, ``trajectories``)."""
        settings = cls.get_protocol_inputs(protocol, overrides)
        label = LabelWorkChain.get_builder_from_protocol(reference_code, {}, engine=engine, protocol=label_protocol)
        builder = cls.get_builder()
        builder.potential, builder.task_code = potential, task_code
        builder.reference = {'engine': label.engine, 'frames_per_job': label.frames_per_job, engine: label[engine]}
        builder.parameters = orm.Dict(settings['parameters'])
        for key, value in inputs.items():
            builder[key] = value
        return builder


class MolecularDynamicsMixin:
    """What the finite-temperature benchmarks share: a potential and a supercell, a ``sample`` namespace exposing
    ``SampleCalculation`` (one MD job for every temperature), its validation, builder, launch and failure check."""

    @classmethod
    def define_md(cls, spec, structure_help: str) -> None:
        from aiida_ferromlip.calculations.sample import SampleCalculation

        spec.input('potential', valid_type=POTENTIAL_TYPES, help='The potential to judge.')
        spec.input('structure', valid_type=orm.StructureData, help=structure_help)
        spec.expose_inputs(SampleCalculation, namespace='sample', exclude=('potential', 'structure'),
                           namespace_options={'help': 'The MD: code, parameters (remd mode), options.'})
        declare(spec, 'ERROR_MD_JOB_FAILED')

    @staticmethod
    def md_problems(inputs) -> list[str]:
        """The sampler's own checks on the MD parameters and the structure, before any job."""
        from aiida_ferromlip.calculations.sample import parameter_problems
        from aiida_ferromlip.validation import structure_problems

        potential = inputs['potential']
        problems = parameter_problems(inputs['sample']['parameters'].get_dict(), potential)
        return problems + structure_problems(inputs['structure'].get_ase(), label='the structure',
                                             supported_species=set(potential.species), labeller='the potential')

    @classmethod
    def md_builder(cls, code, potential, structure: orm.StructureData, inputs: dict, options: dict | None = None):
        """A builder with the potential, the structure, ``analysis`` and the ``sample`` namespace from protocol
        ``inputs`` (as ``get_protocol_inputs`` returns them)."""
        builder = cls.get_builder()
        builder.potential, builder.structure = potential, structure
        builder.analysis = orm.Dict(inputs['analysis'])
        builder.sample = {'code': code, 'parameters': orm.Dict(inputs['sample']['parameters']),
                          'metadata': {'options': {**inputs['sample']['metadata']['options'], **(options or {})}}}
        return builder

    def run_md(self):
        from aiida.engine import ToContext

        from aiida_ferromlip.calculations.sample import SampleCalculation

        inputs = self.exposed_inputs(SampleCalculation, namespace='sample')
        inputs.update(potential=self.inputs.potential, structure=self.inputs.structure)
        parameters = inputs['parameters']
        exchange = 'with replica exchange' if parameters.get('exchange', True) else 'independent runs'
        node = self.submit(SampleCalculation, **inputs)
        self.report(f'{parameters.get("ensemble", "nvt").upper()} MD of {len(self.inputs.structure.sites)} atoms at '
                    f'{parameters["temperatures"]} K ({exchange}): {node.process_label}<{node.pk}>')
        return ToContext(md=node)

    def md_failed(self):
        """The exit code when the MD job failed, else None."""
        return job_failed(self.ctx.md, self.exit_codes.ERROR_MD_JOB_FAILED)


def run_reusing_md(builder, reuse_md: bool):
    """``run_get_node(builder)``; with ``reuse_md`` an identical finished SampleCalculation is taken from AiiDA's
    cache instead of running the MD again (the run scripts' ``--reuse-md``)."""
    from aiida_ferromlip.launch import run_get_node
    from aiida.manage.caching import enable_caching

    if not reuse_md:
        return run_get_node(builder)
    with enable_caching(identifier='aiida.calculations:ferromlip.sample'):
        return run_get_node(builder)


def add_md_options(parser) -> None:
    """The options the finite-temperature run scripts share (phase sequence, dielectric response): the supercell,
    the MD's temperatures, steps, stride and socket clients, and ``--reuse-md``; ``md_overrides`` turns them into
    protocol overrides."""
    parser.add_argument('--supercell', type=int, default=None, help='n for an n x n x n supercell')
    parser.add_argument('--temperatures', type=float, nargs='+', default=None)
    parser.add_argument('--steps', type=int, default=None)
    parser.add_argument('--stride', type=int, default=None)
    parser.add_argument('--clients', type=int, default=None, help='socket clients evaluating the potential')
    parser.add_argument('--reuse-md', action='store_true',
                        help='take an identical finished MD from the cache (AiiDA caching) instead of rerunning it')


def md_overrides(args) -> dict:
    """Protocol overrides (``{'sample': {'parameters': ...}, 'supercell': ...}``) from ``add_md_options``' options;
    an option not given leaves the protocol's value."""
    given = (('temperatures', args.temperatures), ('steps', args.steps), ('stride', args.stride),
             ('num_clients', args.clients))
    overrides = {'sample': {'parameters': {key: value for key, value in given if value}}}
    if args.supercell:
        overrides['supercell'] = [args.supercell] * 3
    return overrides

