"""Parser of ``GapFitCalculation``: GapPotential, validation metrics, parity plot, and gap_fit's errors as exit codes."""

from __future__ import annotations

import io
import re

from aiida import orm

from aiida_ferromlip.analysis.errors import error_metrics, paired_labels, parity_plot_png
from aiida_ferromlip.data.potential import GapPotential
from aiida_ferromlip.engines import gap as engine
from aiida_ferromlip.parsers.base import FerromlipParser

#: (exit code name, pattern in gap_fit's log), most specific first.
FAILURE_PATTERNS = (
    ('ERROR_OUT_OF_MEMORY', re.compile(r'cannot allocate memory|out of memory|allocation.*fail|allocation would exceed|'
                                       r'std::bad_alloc', re.I)),
    ('ERROR_SINGULAR_MATRIX', re.compile(r'factoris|dpotrf|dgeqrf|singular|not positive definite', re.I)),
    ('ERROR_MISSING_SPECIES', re.compile(r'isolated representative|species .*not|unknown species|Z=\d+ not', re.I)),
    ('ERROR_BAD_PARAMETERS', re.compile(r'failed to parse|mandatory parameter|unrecognised|unknown (key|option)|'
                                        r'invalid value|bad value|Use another sparse method|unknown covariance|unknown descriptor', re.I)),
)


def classify_failure(log: str, returncode: int | None) -> tuple[str, str]:
    """``(exit code name, one-line detail)`` for a failed gap_fit run."""
    # SIGKILL as each launcher reports it: -9 from gap_fit itself, 137 through a shell, 247 through the quippy
    # wheel's Python wrapper (``sys.exit(-9)``; measured: a batio3_gap fit killed by the OOM killer beside a second fit)
    if returncode is not None and returncode in (-9, 137, 247):
        return 'ERROR_OUT_OF_MEMORY', 'gap_fit was killed (SIGKILL), most likely by the out-of-memory killer'
    abort = re.search(r'SYSTEM ABORT:(.*(?:\n.*)?)', log)
    detail = ' '.join(abort.group(1).split()) if abort else ' '.join(log.strip().splitlines()[-3:])[:400]
    for name, pattern in FAILURE_PATTERNS:
        if pattern.search(log):
            if not abort:  # the lines that matched say more than a backtrace's tail
                lines = [line.strip() for line in log.splitlines() if pattern.search(line)]
                detail = ' | '.join(dict.fromkeys(lines))[:400] or detail
            return name, detail
    return 'ERROR_GAP_FIT_FAILED', detail


class GapFitParser(FerromlipParser):
    """Read the fitted GAP, compute validation metrics and a parity plot, or explain the failure."""

    def parse(self, **kwargs):
        report, missing = self.read_json(engine.REPORT_FILE)
        if missing:
            return missing
        repository, names = self.retrieved.base.repository, self.names()
        self.out('fit_report', orm.Dict(report))

        if report.get('error') == 'exception':
            return self.exit_codes.ERROR_GAP_FIT_FAILED.format(code=None, detail=report['detail'])
        if report.get('error') == 'memory_budget':
            plan = report['memory_plan']
            return self.exit_codes.ERROR_MEMORY_BUDGET.format(need=plan['estimated_peak_bytes'] / 1024**3,
                                                              budget=plan['budget_bytes'] / 1024**3)
        if report.get('gap_fit_returncode', 0) != 0 or engine.POTENTIAL_FILE not in names:
            log = repository.get_object_content(engine.FIT_LOG) if engine.FIT_LOG in names else ''
            name, detail = classify_failure(log, report.get('gap_fit_returncode'))
            exit_code = getattr(self.exit_codes, name)
            return exit_code.format(detail=detail, code=report.get('gap_fit_returncode'))

        xml = repository.get_object_content(engine.POTENTIAL_FILE)
        potential = GapPotential(io.BytesIO(xml.encode()), filename=GapPotential.DEFAULT_FILENAME)
        parameters = self.node.inputs.parameters.get_dict()
        training_set = self.node.inputs.training_set
        attributes = {
            'species': training_set.species,
            'cutoff': max(float(d['cutoff']) for d in parameters['descriptors']),
            'descriptors': parameters['descriptors'],
            'default_sigma': parameters['default_sigma'],
            'sparse_points': _sparse_points(report.get('command', '')),
            'training_set_uuid': training_set.uuid,
            'num_train_frames': report.get('num_train'),
            'content_hash': GapPotential.content_hash_of(xml),
            'gives_stress': True,
            'fit_wall_time_s': report.get('fit_wall_time_s'),
            'peak_rss_bytes': report.get('peak_rss_bytes'),
        }
        potential.base.attributes.set_many(attributes)
        self.out('potential', potential)

        if engine.PREDICTIONS_FILE in names and report.get('num_validation'):
            from ase.io import read

            with repository.open(engine.PREDICTIONS_FILE) as handle:
                frames = read(handle, index=':', format='extxyz')
            labels = paired_labels(frames,
                                   {'energy': engine.ENERGY_KEY, 'forces': engine.FORCES_KEY, 'stress': engine.VIRIAL_KEY},
                                   {'energy': 'GAP_energy', 'forces': 'GAP_forces', 'stress': 'GAP_stress'})
            self.out('metrics', orm.Dict(error_metrics(labels)))
            png = parity_plot_png(labels, title=f'GAP validation ({len(frames)} held-out frames)')
            self.out('parity_plot', orm.SinglefileData(io.BytesIO(png), filename='parity.png'))
        return None


def _sparse_points(command: str) -> list[int]:
    """Sparse-point count of every descriptor, read back from the gap_fit command that ran."""
    return [int(n) for n in re.findall(r'n_sparse=(\d+)', command)]
