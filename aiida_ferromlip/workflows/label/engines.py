"""Labelling engines behind one contract, so the LabelWorkChain (and the loop above it) never branch on a name.

An engine knows which process labels a batch, which species it can label, how to build that process's inputs
from the user's namespace and a batch of structures, and how to read back a TrainingSet and the failed frames.
Engines: the reference labeller, Quantum ESPRESSO and VASP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from aiida import orm

from aiida_ferromlip.calculations.reference_label import ReferenceLabelCalculation, reference_model_problems
from aiida_ferromlip.validation import DEFAULT_MIN_DISTANCE
from aiida_ferromlip.workflows.dft.qe import QeLabelWorkChain, qe_input_problems
from aiida_ferromlip.workflows.dft.vasp import VaspLabelWorkChain, vasp_input_problems


@dataclass(frozen=True)
class Engine:
    """What the LabelWorkChain needs to know about one labelling engine."""

    name: str
    process_class: type
    description: str
    #: ``(namespace_inputs, structures) -> error message or None``; must not launch anything.
    validate: Callable[[dict, dict], str | None]

    def launch_inputs(self, namespace_inputs: dict, batch: dict[str, orm.StructureData]) -> dict:
        return {**namespace_inputs, 'structures': batch}

    def collect(self, node: orm.ProcessNode, batch_keys) -> tuple[orm.Data | None, dict[str, str]]:
        """``(training_set or None, {frame key: reason})`` for a finished labelling process."""
        failures = dict(node.outputs.failed_frames.get_dict()) if 'failed_frames' in node.outputs else {}
        training_set = node.outputs.training_set if 'training_set' in node.outputs else None
        if not node.is_finished_ok:
            if node.is_excepted:
                reason = f'{node.process_label}<{node.pk}> excepted (see `verdi process report {node.pk}`)'
            elif node.is_killed:
                reason = f'{node.process_label}<{node.pk}> was killed'
            else:
                reason = f'{node.process_label}<{node.pk}> failed: [{node.exit_status}] {node.exit_message}'
            labelled = set()
            if training_set is not None:
                labelled = {o.get('frame_key') for o in training_set.origins}
            failures.update({key: failures.get(key, reason) for key in batch_keys if key not in labelled})
        return training_set, failures


def _validate_reference(namespace_inputs: dict, structures: dict) -> str | None:
    model = namespace_inputs['model'].value if 'model' in namespace_inputs else '7net-0'
    settings = namespace_inputs['settings'].get_dict() if 'settings' in namespace_inputs else {}
    return reference_model_problems(model, structures, settings.get('min_distance', DEFAULT_MIN_DISTANCE))


ENGINES: dict[str, Engine] = {
    'reference': Engine(
        name='reference',
        process_class=ReferenceLabelCalculation,
        description='Universal potential shipped offline (SevenNet-0): for tests, demos and data-efficiency studies.',
        validate=_validate_reference,
    ),
    'qe': Engine(
        name='qe',
        process_class=QeLabelWorkChain,
        description='Quantum ESPRESSO pw.x through aiida-quantumespresso (PBEsol, one PwBaseWorkChain per frame).',
        validate=qe_input_problems,
    ),
    'vasp': Engine(
        name='vasp',
        process_class=VaspLabelWorkChain,
        description="VASP through aiida-vasp with the minimalist paper's settings (needs your own VASP code and POTCARs).",
        validate=vasp_input_problems,
    ),
}


def get_engine(name: str) -> Engine:
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f'unknown labelling engine `{name}`; available: {", ".join(sorted(ENGINES))}') from None
