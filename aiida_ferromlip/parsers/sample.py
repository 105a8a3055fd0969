"""Parser of ``SampleCalculation``: per-temperature trajectories and exchange statistics."""

from __future__ import annotations

from aiida import orm

from aiida_ferromlip.calculations.sample import trajectory_from_frames, trajectory_key
from aiida_ferromlip.engines import md as engine
from aiida_ferromlip.parsers.base import FerromlipParser


class SampleParser(FerromlipParser):
    """One TrajectoryData per temperature rung, and the exchange statistics."""

    def parse(self, **kwargs):
        from ase.io import read

        report, missing = self.read_json(engine.REPORT_FILE)
        if missing:
            return missing
        repository, names = self.retrieved.base.repository, self.names()
        if 'error' in report:
            exit_code = {'client_lost': self.exit_codes.ERROR_CLIENT_LOST,
                         'missing_stress': self.exit_codes.ERROR_MISSING_STRESS,
                         'blow_up': self.exit_codes.ERROR_MD_BLOW_UP}.get(report.get('error_kind'),
                                                                          self.exit_codes.ERROR_MD_FAILED)
            return exit_code.format(error=report['error'])
        parameters = self.node.inputs.parameters.get_dict()
        for index, count in enumerate(report['frames_per_trajectory']):
            filename = f'trajectory_{index}.extxyz'
            if filename not in names:
                return self.exit_codes.ERROR_OUTPUT_MISSING.format(filename=filename)
            if count == 0:
                continue
            with repository.open(filename) as handle:
                frames = read(handle, index=':', format='extxyz')
            self.out(f'trajectories.{trajectory_key(parameters, index)}', trajectory_from_frames(frames))
        self.out('statistics', orm.Dict(report))
        exchange = report.get('exchange')
        if exchange:
            rates = ', '.join(f"{p['pair']}: {p['accepted']}/{p['attempted']}" for p in exchange['neighbour_pairs'])
            self.logger.report(f'replica exchanges accepted per neighbour pair: {rates}')
        return None
