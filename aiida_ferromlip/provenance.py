"""Provenance queries a user runs on finished work (the recipes of docs/provenance.md call these)."""

from __future__ import annotations

from aiida import orm
from aiida.common.links import LinkType

from aiida_ferromlip.data.potential import POTENTIAL_TYPES
from aiida_ferromlip.data.training_set import TrainingSet

#: Inputs of a TrainingSet-making calcfunction that are never labels, whichever CalcJob created them.
NOT_LABELS = (orm.StructureData, *POTENTIAL_TYPES)


def labelling_calculations(training_set: TrainingSet) -> list[orm.CalcJobNode]:
    """Every CalcJob that created a TrainingSet from which ``training_set`` was built (itself included).

    Walks the graph, independently of the per-frame ``origins`` attribute, so the two can be checked against
    each other: a set created by a CalcJob is a leaf; a set created by a calcfunction (``merge_training_sets``)
    leads to the TrainingSets that calcfunction took as inputs, and a set a calcfunction built from calculation
    outputs (``training_set_from_pw``: the ``output_parameters``/``output_trajectory`` of each PwCalculation)
    leads to the CalcJobs that created those inputs. Structures are what is labelled, and a potential is what
    predicts, not labels: StructureData and Potential inputs never count, whoever created them, and neither does a
    job that ran a fitted potential (an ``AtomsTaskCalculation`` whose ``model`` is a Potential: the benchmarks' and
    the physics card's predictions, not labelling work; with the reference model it is labelling).

    Why not one ``QueryBuilder`` with ``with_descendants``: in an active-learning loop the ancestors of the final
    set include every fit, MD run and selection, and the recursive query enumerates *paths*, which multiply with
    each iteration (a 3-iteration loop drove the query past 20 GB, measured here). The walk below visits each
    TrainingSet once, one QueryBuilder per set.
    """
    found: dict[int, orm.CalcJobNode] = {}
    seen: set[int] = set()
    pending = [training_set]
    while pending:
        node = pending.pop()
        if node.pk in seen:
            continue
        seen.add(node.pk)
        creator = node.creator
        if isinstance(creator, orm.CalcJobNode):
            if not _predicted_by_potential(creator):
                found[creator.pk] = creator
        elif creator is not None:
            query = orm.QueryBuilder()
            query.append(orm.ProcessNode, filters={'id': creator.pk}, tag='creator')
            query.append(orm.Data, with_outgoing='creator', edge_filters={'type': LinkType.INPUT_CALC.value})
            for data in query.all(flat=True):
                if isinstance(data, TrainingSet):
                    pending.append(data)
                elif not isinstance(data, NOT_LABELS) and isinstance(data.creator, orm.CalcJobNode):
                    found[data.creator.pk] = data.creator
    return [found[pk] for pk in sorted(found)]


def _predicted_by_potential(calculation: orm.CalcJobNode) -> bool:
    """Whether ``calculation``'s outputs are a fitted potential's predictions rather than labels."""
    model = calculation.base.links.get_incoming(link_label_filter='model').all_nodes()
    return bool(model) and isinstance(model[0], POTENTIAL_TYPES)


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
