"""What the benchmark workflows share: labels predicted by a potential, and the reference-labeller namespace."""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

from aiida_ferromlip.data.potential import POTENTIAL_TYPES
from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.protocols import merged_settings  # noqa: F401  (re-exported for the benchmarks)
from aiida_ferromlip.workflows.label import LabelWorkChain


@calcfunction
def potential_labels(potential: orm.SinglefileData, **structures: orm.StructureData) -> TrainingSet:
    """Energy, forces and stress of ``structures`` predicted by ``potential`` (any Potential node)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    calculator = potential.calculator()
    frames, origins = [], []
    for key in sorted(structures):
        atoms = structures[key].get_ase()
        atoms.calc = calculator
        results = {'energy': atoms.get_potential_energy(), 'forces': atoms.get_forces()}
        if potential.gives_stress:
            results['stress'] = atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, **results)
        frames.append(atoms)
        origins.append({'labeller': f'potential:{potential.uuid}', 'frame_key': key,
                        'structure_uuid': structures[key].uuid})
    return TrainingSet(frames=frames, origins=origins)


class ReferenceMixin:
    """What the benchmark workflows share: the potential judged, their parameters, and a `reference` namespace
    that is a LabelWorkChain's (any engine), built from its protocol."""

    @classmethod
    def define_benchmark(cls, spec, defaults: dict) -> None:
        spec.input('potential', valid_type=POTENTIAL_TYPES, help='The potential to judge.')
        spec.input('parameters', valid_type=orm.Dict, required=False, help=f'Settings: {sorted(defaults)}.')
        spec.expose_inputs(LabelWorkChain, namespace='reference', exclude=('structures',),
                           namespace_options={'help': 'How the reference labels are made (any engine).'})

    def submit_reference(self, structures: dict):
        """Label ``structures`` with the reference engine; the LabelWorkChain lands in ``ctx.reference``."""
        inputs = self.exposed_inputs(LabelWorkChain, namespace='reference')
        inputs['structures'] = dict(structures)
        return self.to_context(reference=self.submit(LabelWorkChain, **inputs))

    @classmethod
    def get_builder_from_protocol(cls, potential, reference_code: orm.AbstractCode, engine: str = 'reference',
                                  label_protocol: str = 'fast', parameters: dict | None = None, **inputs):
        """Builder judging ``potential`` against ``engine`` on ``reference_code``; ``inputs`` fill the rest."""
        label = LabelWorkChain.get_builder_from_protocol(reference_code, {}, engine=engine, protocol=label_protocol)
        builder = cls.get_builder()
        builder.potential = potential
        builder.reference = {'engine': label.engine, 'frames_per_job': label.frames_per_job, engine: label[engine]}
        if parameters:
            builder.parameters = orm.Dict(parameters)
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
        spec.exit_code(410, 'ERROR_MD_FAILED', message='The MD (SampleCalculation<{pk}>) failed: {message}')

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
        node = self.ctx.md
        if node.is_finished_ok:
            return None
        return self.exit_codes.ERROR_MD_FAILED.format(pk=node.pk, message=node.exit_message or node.process_state)


def run_reusing_md(builder, reuse_md: bool):
    """``run_get_node(builder)``; with ``reuse_md`` an identical finished SampleCalculation is taken from AiiDA's
    cache instead of running the MD again (the run scripts' ``--reuse-md``)."""
    from aiida.engine import run_get_node
    from aiida.manage.caching import enable_caching

    if not reuse_md:
        return run_get_node(builder)
    with enable_caching(identifier='aiida.calculations:ferromlip.sample'):
        return run_get_node(builder)
