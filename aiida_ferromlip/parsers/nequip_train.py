"""Parser of ``NequipTrainCalculation``: NequipPotential (+ compiled build), validation metrics, parity plot,
loss per epoch, and a diverged or failed training as its own exit code."""

from __future__ import annotations

import io
import json

import numpy as np
from aiida import orm

from aiida_ferromlip.analysis.errors import error_metrics, paired_labels, parity_plot_png
from aiida_ferromlip.analysis.plots import figure_png
from aiida_ferromlip.data.potential import NequipPotential
from aiida_ferromlip.engines import nequip_train as engine
from aiida_ferromlip.parsers.base import FerromlipParser


def learning_curve_png(curve: list[dict], title: str) -> bytes:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.6))
    for key, label in (('train_loss', 'training'), ('validation_loss', 'validation')):
        points = [(row['epoch'], row[key]) for row in curve if key in row]
        if points:
            axis.semilogy(*zip(*points), 'o-' if len(points) < 30 else '-', label=label)
    axis.set_xlabel('epoch')
    axis.set_ylabel('loss (weighted sum)')
    axis.set_title(title)
    axis.legend()
    return figure_png(figure, dpi=100)


class NequipTrainParser(FerromlipParser):
    """Read the packaged model, its validation predictions and its loss curve, or explain the failure."""

    def parse(self, **kwargs):
        report, missing = self.read_json(engine.REPORT_FILE)
        if missing:
            return missing
        repository, names = self.retrieved.base.repository, self.names()
        self.out('train_report', orm.Dict(report))
        curve = json.loads(repository.get_object_content(engine.LOSS_FILE)) if engine.LOSS_FILE in names else []
        if curve:
            self._learning_curve(curve)

        error = report.get('error')
        log = repository.get_object_content(engine.TRAIN_LOG) if engine.TRAIN_LOG in names else ''
        detail = report.get('detail') or ' '.join(log.strip().splitlines()[-3:])[:400]
        if error == 'nan_loss':
            epoch = next((row['epoch'] for row in curve
                          if any(not np.isfinite(v) for k, v in row.items() if k != 'epoch')), None)
            return self.exit_codes.ERROR_NAN_LOSS.format(epoch=epoch)
        if error == 'compile_failed':
            return self.exit_codes.ERROR_COMPILE_FAILED.format(detail=detail)
        if error or engine.PACKAGE_FILE not in names:
            return self.exit_codes.ERROR_TRAINING_FAILED.format(detail=detail)

        training_set = self.node.inputs.training_set
        config = self.node.inputs.config.get_dict()
        model = config['training_module']['model']
        with repository.open(engine.PACKAGE_FILE, 'rb') as handle:
            potential = NequipPotential(io.BytesIO(handle.read()), filename=NequipPotential.DEFAULT_FILENAME)
        attributes = {
            'species': training_set.species,
            'family': 'allegro' if 'allegro' in model['_target_'] else 'nequip',
            'cutoff': float(config['cutoff_radius']),
            'training_set_uuid': training_set.uuid,
            'num_train_frames': _num_train(len(training_set), self.node.inputs.parameters.get_dict()),
            'gives_stress': True,
            'epochs': report.get('epochs'),
            'device': report.get('device'),
            'train_wall_time_s': report.get('train_wall_time_s'),
        }
        if engine.COMPILED_FILE in names:
            with repository.open(engine.COMPILED_FILE, 'rb') as handle:
                compiled = orm.SinglefileData(io.BytesIO(handle.read()), filename=engine.COMPILED_FILE)
            attributes['compiled_model_uuid'] = compiled.uuid
            self.out('compiled_model', compiled)
        potential.base.attributes.set_many(attributes)
        self.out('potential', potential)

        if engine.PREDICTIONS_FILE in names and report.get('num_validation'):
            from ase.io import read

            with repository.open(engine.PREDICTIONS_FILE) as handle:
                frames = read(handle, index=':', format='extxyz')
            labels = paired_labels(frames, {'energy': engine.ENERGY_KEY, 'forces': engine.FORCES_KEY,
                                            'stress': engine.STRESS_KEY}, engine.PREDICTED)
            self.out('metrics', orm.Dict(error_metrics(labels)))
            png = parity_plot_png(labels, title=f'{attributes["family"]} validation ({len(frames)} held-out frames)')
            self.out('parity_plot', orm.SinglefileData(io.BytesIO(png), filename='parity.png'))
        return None

    def _learning_curve(self, curve: list[dict]) -> None:
        array = orm.ArrayData()
        array.set_array('epoch', np.array([row['epoch'] for row in curve], dtype=int))
        for key in ('train_loss', 'validation_loss', 'learning_rate'):
            array.set_array(key, np.array([row.get(key, np.nan) for row in curve], dtype=float))
        self.out('learning_curve', array)
        png = learning_curve_png(curve, 'nequip-train loss per epoch')
        self.out('learning_curve_plot', orm.SinglefileData(io.BytesIO(png), filename='learning_curve.png'))


def _num_train(total: int, parameters: dict) -> int:
    from aiida_ferromlip.calculations.gap_fit import split_indices

    train, _ = split_indices(total, float(parameters.get('validation_fraction', 0.1)), int(parameters.get('seed', 0)))
    return len(train)
