"""``AtomsTaskCalculation``: relaxations and single points with any Potential or the reference model, as a job.

The heavy ASE work of the benchmarks and of the physics card (symmetry-constrained relaxations, energies along a
path, EOS points, forces on phonon displacements, predictions on a test set) runs through ``ferromlip-task`` on
the computer like every other job, so a daemon ships it to a cluster instead of running it in a worker.
"""

from __future__ import annotations

import json

from aiida import orm

from aiida_ferromlip.calculations.base import FerromlipCalcJob
from aiida_ferromlip.data.potential import POTENTIAL_TYPES
from aiida_ferromlip.data.training_set import TrainingSet, trajectory_frames
from aiida_ferromlip.engines import atoms_task as engine
from aiida_ferromlip.engines.potentials import SPEC_FILE
from aiida_ferromlip.calculations.reference_label import validate_structures_for_labeller
from aiida_ferromlip.exit_codes import declare

#: What the ``model`` port takes: a Potential node, or a Str naming the reference labeller's model.
MODEL_TYPES = (*POTENTIAL_TYPES, orm.Str)


def model_species(model) -> set[str] | None:
    """Species ``model`` knows (``None`` when that cannot be told without loading it)."""
    if isinstance(model, orm.Str):
        from aiida_ferromlip.engines.reference import supported_species

        return set(supported_species(model.value))
    return set(model.species)


def model_gives_stress(model) -> bool:
    """Whether ``model`` gives the stress (a flexible cell needs it): the reference models all do."""
    return True if isinstance(model, orm.Str) else model.gives_stress


def model_spec(model) -> tuple[dict, dict[str, bytes]]:
    """``(potential.json spec, files)`` for a Potential node or a reference-model name."""
    if isinstance(model, orm.Str):
        from aiida_ferromlip.engines.reference import checkpoint_path

        checkpoint_path(model.value)  # unknown names fail here, before the job
        return {'kind': 'reference', 'model': model.value}, {}
    return model.job_files()


def trajectory_frame_key(trajectory_key: str, index: int) -> str:
    """The frame key of frame ``index`` of the trajectory given as ``trajectories.<trajectory_key>``."""
    return f'{trajectory_key}:{index:05d}'


def validate_inputs(inputs, namespace):
    if any(port not in namespace for port in ('model', 'structures', 'trajectories', 'task')):
        return None
    if not inputs.get('structures') and not inputs.get('trajectories'):
        return 'give `structures` or `trajectories` (or both): there is nothing to do'
    try:
        task = inputs['task'].get_dict()
        engine.task_settings(task)
        species = model_species(inputs['model'])
    except ValueError as exception:
        return str(exception)
    if task['task'] == 'neb':
        problem = engine.neb_ends_problem({key: node.get_ase() for key, node in inputs['structures'].items()})
        if problem:
            return problem
    if species is not None:
        for key, trajectory in inputs.get('trajectories', {}).items():
            unknown = set(trajectory.symbols) - species
            if unknown:
                return f'trajectory `{key}` holds {sorted(unknown)}, which the model does not know ({sorted(species)})'
    if not inputs.get('structures'):
        return None
    return validate_structures_for_labeller(inputs['structures'], species, 'the model')


class AtomsTaskCalculation(FerromlipCalcJob):
    """Relax or evaluate structures with a Potential (or the reference model) on the computer."""

    _PARSER = 'ferromlip.atoms_task'
    _OUTPUT_FILENAME = 'ferromlip-task.out'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('model', valid_type=MODEL_TYPES,
                   help='A Potential node, or a Str naming the reference labeller model (e.g. 7net-0).')
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True, required=False,
                             help='The structures, by key (the key names each result).')
        spec.input_namespace('trajectories', valid_type=orm.TrajectoryData, dynamic=True, required=False,
                             help='Trajectories whose every frame is a structure too (keyed `<key>:<frame index>`, '
                                  'e.g. sampler frames scored by a committee).')
        spec.input('task', valid_type=orm.Dict,
                   help=f'`{{"task": name, settings}}`; tasks and their default settings: {engine.TASKS}.')
        spec.inputs.validator = validate_inputs

        spec.output('results', valid_type=orm.Dict,
                    help='`rows` per structure (energy, cell, convergence...), `failures` with reasons, timings, '
                         "`summary` (task `neb`: the band's convergence).")
        spec.output('labels', valid_type=TrainingSet, required=False,
                    help="The final frames (task `neb`: the band's images in order) with the model's energy, forces "
                         'and stress.')
        spec.output_namespace('structures', valid_type=orm.StructureData, dynamic=True, required=False,
                              help='The relaxed structures (task `relax`).')
        declare(spec, 'ERROR_OUTPUT_CORRUPT', 'ERROR_TASK_FAILED', 'ERROR_NO_FRAME_DONE')

    @classmethod
    def get_builder_for(cls, code, model, structures: dict, task: dict, options: dict | None = None):
        """Builder running ``task`` (``{'task': ..., settings}``) on ``structures`` with ``model``."""
        builder = cls.get_builder()
        builder.code = code
        builder.model = model
        if structures:
            builder.structures = dict(structures)
        builder.task = orm.Dict(task)
        if options:
            builder.metadata.options = options
        return builder

    def prepare_for_submission(self, folder):
        from ase.io import write

        spec, files = model_spec(self.inputs.model)
        for name, content in files.items():
            with folder.open(name, 'wb') as handle:
                handle.write(content)
        with folder.open(SPEC_FILE, 'w') as handle:
            json.dump(spec, handle)
        frames = []
        for key in sorted(self.inputs.get('structures', {})):
            atoms = self.inputs.structures[key].get_ase()
            atoms.info['frame_key'] = key
            frames.append(atoms)
        for key in sorted(self.inputs.get('trajectories', {})):
            for index, atoms in enumerate(trajectory_frames(self.inputs.trajectories[key])):
                atoms.info['frame_key'] = trajectory_frame_key(key, index)
                frames.append(atoms)
        with folder.open(engine.STRUCTURES_FILE, 'w') as handle:
            write(handle, frames, format='extxyz')
        with folder.open(engine.TASK_FILE, 'w') as handle:
            json.dump(self.inputs.task.get_dict(), handle)
        return self.calcinfo([], [engine.RESULTS_FILE, engine.OUTPUT_FILE])
