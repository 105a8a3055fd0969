"""Parser of ``ReferenceLabelCalculation``: labelled extxyz + JSON report -> TrainingSet and failures."""

from __future__ import annotations

import json

from aiida import orm
from aiida.parsers import Parser

from aiida_ferromlip.calculations.reference_label import OUTPUT_FILE, REPORT_FILE
from aiida_ferromlip.data.training_set import TrainingSet


class ReferenceLabelParser(Parser):
    """Turn the labeller's output into a TrainingSet whose frames name this calculation as their origin."""

    def parse(self, **kwargs):
        from ase.io import read

        retrieved = self.retrieved
        names = retrieved.base.repository.list_object_names()
        for filename in (REPORT_FILE, OUTPUT_FILE):
            if filename not in names:
                return self.exit_codes.ERROR_OUTPUT_MISSING.format(filename=filename)
        try:
            report = json.loads(retrieved.base.repository.get_object_content(REPORT_FILE))
            with retrieved.base.repository.open(OUTPUT_FILE) as handle:
                frames = read(handle, index=':', format='extxyz') if report['num_labelled'] else []
        except Exception as exception:  # any malformed output is reported, not raised
            return self.exit_codes.ERROR_OUTPUT_CORRUPT.format(error=f'{type(exception).__name__}: {exception}')

        failures = dict(report.get('failures', {}))
        self.out('failed_frames', orm.Dict(failures))
        timings = report.pop('wall_time_per_frame_s', {})
        self.out('report', orm.Dict({**report, 'wall_time_total_s': sum(timings.values())}))

        if not frames:
            return self.exit_codes.ERROR_NO_FRAME_DONE.format(num=report.get('num_input', 0), failures=failures)

        structures = self.node.inputs.structures
        origins = []
        for atoms in frames:
            key = str(atoms.info.pop('frame_key'))
            origins.append({
                'labeller': report['labeller'],
                'process_uuid': self.node.uuid,
                'structure_uuid': structures[key].uuid,
                'frame_key': key,
                'wall_time_s': timings.get(key),
            })
        if failures:
            self.logger.warning(f'{len(failures)} frame(s) could not be labelled: {failures}')
        self.out('training_set', TrainingSet(frames=frames, origins=origins))
        return None
