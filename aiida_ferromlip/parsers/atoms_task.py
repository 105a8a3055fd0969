"""Parser of ``AtomsTaskCalculation``: per-structure rows, the model's labels, relaxed structures."""

from __future__ import annotations

from aiida import orm

from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.engines import atoms_task as engine
from aiida_ferromlip.parsers.base import FerromlipParser


class AtomsTaskParser(FerromlipParser):
    def parse(self, **kwargs):
        from ase.io import read

        report, missing = self.read_json(engine.RESULTS_FILE)
        if missing:
            return missing
        if 'error' in report:
            return self.exit_codes.ERROR_TASK_FAILED.format(error=report['error'])
        timings = report.pop('wall_time_per_frame_s', {})
        self.out('results', orm.Dict({**report, 'wall_time_total_s': sum(timings.values())}))
        if not report['rows']:
            return self.exit_codes.ERROR_NO_FRAME_DONE.format(num=report['num_input'], failures=report['failures'])
        if engine.OUTPUT_FILE not in self.names():
            return self.exit_codes.ERROR_OUTPUT_MISSING.format(filename=engine.OUTPUT_FILE)
        try:
            with self.retrieved.base.repository.open(engine.OUTPUT_FILE) as handle:
                frames = read(handle, index=':', format='extxyz')
        except Exception as exception:
            return self.exit_codes.ERROR_OUTPUT_CORRUPT.format(error=f'{type(exception).__name__}: {exception}')
        # the inputs once: each `node.inputs` access rebuilds the dict of every incoming link (one per structure)
        inputs = self.node.inputs
        structure_uuids = {key: node.uuid for key, node in inputs.structures.items()} if 'structures' in inputs else {}
        labeller, process_uuid = f'model:{inputs.model.uuid}', self.node.uuid
        origins = []
        for atoms in frames:
            key = str(atoms.info.pop('frame_key'))
            origins.append({'labeller': labeller, 'process_uuid': process_uuid,
                            # None for neb images and trajectory frames (their key names trajectory and frame)
                            'structure_uuid': structure_uuids.get(key),
                            'frame_key': key, 'wall_time_s': timings.get(key)})
            if report['task'] == 'relax':
                self.out(f'structures.{key}', orm.StructureData(ase=atoms))
        self.out('labels', TrainingSet(frames=frames, origins=origins))
        return None
