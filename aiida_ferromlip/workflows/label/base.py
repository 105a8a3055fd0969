"""``LabelWorkChain``: label a set of structures with a chosen engine and collect one TrainingSet.

Structures are split in batches (one labelling process per batch, so a cluster job amortises start-up costs),
every failed frame is reported by key and reason and left out of the TrainingSet, and the cost of the labels
(wall time per frame and per batch) is summarised.
"""

from __future__ import annotations

import pathlib

from aiida import orm
from aiida.engine import WorkChain, calcfunction

from aiida_ferromlip.calculations.base import PROTOCOLS, ProtocolMixin
from aiida_ferromlip.data.training_set import TrainingSet, merge_training_sets
from aiida_ferromlip.exit_codes import declare
from aiida_ferromlip.workflows.label.engines import ENGINES, get_engine


@calcfunction
def labelling_report(batches: orm.Dict, failures: orm.Dict, **nodes) -> dict:
    """The frames left out (``failed_frames``) and the ``cost`` of a labelling: per batch its job, frames, frames
    labelled (the batch's TrainingSet ``labels_<batch>``) and the wall time its job reported (``report_<batch>``)."""
    cost = {'batches': []}
    for batch, keys in sorted(batches.get_dict().items()):
        report, labels = nodes.get(f'report_{batch}'), nodes.get(f'labels_{batch}')
        cost['batches'].append({'pk': report.creator.pk if report is not None and report.creator else None,
                                'frames': len(keys), 'labelled': len(labels) if labels is not None else 0,
                                'wall_time_s': report.get('wall_time_total_s') if report is not None else None})
    times = [b['wall_time_s'] for b in cost['batches'] if b['wall_time_s'] is not None]
    num_labelled = sum(b['labelled'] for b in cost['batches'])
    cost.update({'total_wall_time_s': sum(times), 'wall_time_per_frame_s': sum(times) / num_labelled if num_labelled
                 else None, 'num_labelled': num_labelled, 'num_failed': len(failures.get_dict())})
    return {'failed_frames': orm.Dict(failures.get_dict()), 'cost': orm.Dict(cost)}


def validate_inputs(inputs, namespace):
    """Fail fast: unknown engine, missing engine namespace, empty or unphysical structures."""
    if 'structures' not in namespace:
        return None  # exposed in a wrapping workflow that supplies the structures itself
    engine_name = inputs['engine'].value if 'engine' in inputs else 'reference'
    try:
        engine = get_engine(engine_name)
    except ValueError as exception:
        return str(exception)
    if not inputs.get(engine.name):
        return f'the `{engine.name}` engine was chosen but no `{engine.name}` inputs (code, ...) were given'
    return engine.validate(inputs[engine.name], inputs.get('structures', {}))


def _as_node(key: str, value):
    """Protocol values of an engine namespace as the nodes its ports take (``metadata`` stays plain)."""
    if key == 'metadata' or isinstance(value, orm.Data):
        return value
    if isinstance(value, dict):
        return orm.Dict(value)
    return orm.to_aiida_type(value)


class LabelWorkChain(ProtocolMixin, WorkChain):
    """Label structures with one engine and return them as a TrainingSet with full provenance."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True,
                             help='Structures to label, by link-label key (the key is the frame key).')
        spec.input('engine', valid_type=orm.Str, default=lambda: orm.Str('reference'),
                   help=f'Labelling engine: {", ".join(sorted(ENGINES))}.')
        spec.input('frames_per_job', valid_type=orm.Int, default=lambda: orm.Int(20),
                   validator=lambda value, _: None if value.value > 0 else '`frames_per_job` must be positive',
                   help='Frames labelled by one process (one job on the computer).')
        for engine in ENGINES.values():  # one namespace per engine of the registry, named after it
            spec.expose_inputs(engine.process_class, namespace=engine.name, exclude=('structures',),
                               namespace_options={'required': False, 'populate_defaults': False,
                                                  'help': f'Inputs of engine `{engine.name}`: {engine.description}'})
        spec.inputs.validator = validate_inputs

        spec.outline(cls.setup, cls.label, cls.collect)

        spec.output('training_set', valid_type=TrainingSet, help='All frames that were labelled.')
        spec.output('failed_frames', valid_type=orm.Dict, help='`{frame key: reason}` of frames left out.')
        spec.output('cost', valid_type=orm.Dict, help='Wall time per batch and per frame of the labels.')
        declare(spec, 'ERROR_NO_FRAME_LABELLED')

    @classmethod
    def get_protocol_filepath(cls) -> pathlib.Path:
        return PROTOCOLS / 'label.yaml'

    @classmethod
    def get_builder_from_protocol(cls, code: orm.AbstractCode, structures: dict, protocol: str | None = None,
                                  overrides: dict | None = None, *, engine: str = 'reference'):
        """Builder for ``structures`` labelled with ``engine`` on ``code``; ``overrides`` are merged, never mutated."""
        inputs = cls.get_protocol_inputs(protocol, overrides)
        get_engine(engine)
        builder = cls.get_builder()
        builder.engine = orm.Str(engine)
        builder.structures = dict(structures)
        builder.frames_per_job = orm.Int(inputs['frames_per_job'])
        namespace = {key: _as_node(key, value) for key, value in inputs.get(engine, {}).items()}
        namespace['code'] = code
        builder[engine] = namespace
        return builder

    def setup(self):
        self.ctx.engine = get_engine(self.inputs.engine.value)
        keys = sorted(self.inputs.structures)
        size = self.inputs.frames_per_job.value
        self.ctx.batches = [keys[i:i + size] for i in range(0, len(keys), size)]
        self.report(f'labelling {len(keys)} structure(s) with the `{self.ctx.engine.name}` engine '
                    f'in {len(self.ctx.batches)} batch(es)')

    def label(self):
        engine = self.ctx.engine
        namespace = self.exposed_inputs(engine.process_class, namespace=engine.name)
        for index, batch in enumerate(self.ctx.batches):
            inputs = engine.launch_inputs(namespace, {key: self.inputs.structures[key] for key in batch})
            inputs.setdefault('metadata', {})['call_link_label'] = f'label_batch_{index:04d}'
            node = self.submit(engine.process_class, **inputs)
            self.report(f'batch {index}: {len(batch)} frame(s) sent to {node.process_label}<{node.pk}>')
            self.to_context(**{f'batch_{index:04d}': node})

    def collect(self):
        engine = self.ctx.engine
        labelled, failures, evidence, batches = {}, {}, {}, {}
        for index, batch in enumerate(self.ctx.batches):
            name = f'batch_{index:04d}'
            node = self.ctx[name]
            batches[name] = list(batch)
            training_set, batch_failures = engine.collect(node, batch)
            failures.update(batch_failures)
            if training_set is not None:
                labelled[name] = evidence[f'labels_{name}'] = training_set
            if 'report' in node.outputs:
                evidence[f'report_{name}'] = node.outputs.report
        for key, reason in sorted(failures.items()):
            self.report(f'frame `{key}` left out: {reason}')
        report = labelling_report(orm.Dict(batches), orm.Dict(failures), **evidence)
        self.out('failed_frames', report['failed_frames'])
        self.out('cost', report['cost'])
        num_labelled = report['cost']['num_labelled']
        if not labelled:
            return self.exit_codes.ERROR_NO_FRAME_LABELLED.format(failures=failures)
        if len(labelled) == 1:
            training_set = next(iter(labelled.values()))
        else:
            training_set = merge_training_sets(**labelled)
        self.out('training_set', training_set)
        self.report(f'{num_labelled} frame(s) labelled, {len(failures)} left out; TrainingSet<{training_set.pk}>')
        return None
