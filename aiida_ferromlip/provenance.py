"""Provenance queries a user runs on finished work (the recipes of docs/provenance.md call these)."""

from __future__ import annotations

from aiida import orm

from aiida_ferromlip.data.training_set import TrainingSet


def labelling_calculations(training_set: TrainingSet) -> list[orm.CalcJobNode]:
    """Every CalcJob that created a TrainingSet from which ``training_set`` was built (itself included).

    The graph is walked with QueryBuilder, independently of the per-frame ``origins`` attribute, so the two can
    be checked against each other.
    """
    direct = orm.QueryBuilder()
    direct.append(TrainingSet, filters={'id': training_set.pk}, tag='final')
    direct.append(orm.CalcJobNode, with_outgoing='final', project='*')

    upstream = orm.QueryBuilder()
    upstream.append(TrainingSet, filters={'id': training_set.pk}, tag='final')
    upstream.append(TrainingSet, with_descendants='final', tag='part')
    upstream.append(orm.CalcJobNode, with_outgoing='part', project='*')

    nodes = {node.pk: node for (node,) in direct.all()}
    nodes.update({node.pk: node for (node,) in upstream.all()})
    return [nodes[pk] for pk in sorted(nodes)]


def frame_origins_summary(training_set: TrainingSet) -> dict[str, int]:
    """How many frames each labelling process contributed: ``{'ReferenceLabelCalculation<pk>': count}``."""
    counts: dict[str, int] = {}
    for origin in training_set.origins:
        uuid = origin.get('process_uuid')
        name = origin.get('labeller', 'unknown')
        if uuid:
            node = orm.load_node(uuid)
            name = f'{node.process_label}<{node.pk}>'
        counts[name] = counts.get(name, 0) + 1
    return counts
