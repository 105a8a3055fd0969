"""``ferromlip-nequip``: train an Allegro or NequIP model with ``nequip-train``, package it, compile it, validate it.

The executable behind ``NequipTrainCalculation`` (no AiiDA imports: it runs where the job lands). Steps:

1. ``nequip-train`` with the Hydra config the calculation wrote (``config.yaml``: generated from the protocol on
   the AiiDA side and stored as an input node), on ``train.extxyz`` / ``validation.extxyz``; Lightning chooses the
   GPU when the machine has one (``device: auto``), the CPU otherwise;
2. a diverged training (NaN loss) is detected in Lightning's CSV log and reported as such;
3. ``nequip-package build`` → ``model.nequip.zip``: the portable archive (code + weights) a user runs anywhere
   with the same nequip/allegro versions;
4. optionally ``nequip-compile --mode aotinductor --target ase`` → ``model.nequip.pt2`` for fast inference on
   this kind of machine (TorchScript is refused by nequip on torch ≥ 2.10; AOTInductor needs a C compiler);
5. predictions of the packaged model on the validation frames, and the loss per epoch, for the parser.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import pathlib
import shutil
import subprocess
import sys
import time

from aiida_ferromlip.engines import exit_now, process_started_at

CONFIG_FILE = 'config.yaml'
PARAMETERS_FILE = 'parameters.json'
TRAIN_FILE = 'train.extxyz'
VALIDATION_FILE = 'validation.extxyz'
PACKAGE_FILE = 'model.nequip.zip'
COMPILED_FILE = 'model.nequip.pt2'
PREDICTIONS_FILE = 'predictions.extxyz'
LOSS_FILE = 'loss.csv'
REPORT_FILE = 'report.json'
TRAIN_LOG = 'train.log'
RUN_DIR = 'train'

ENERGY_KEY, FORCES_KEY, STRESS_KEY = 'REF_energy', 'REF_forces', 'REF_stress'
PREDICTED = {'energy': 'NQ_energy', 'forces': 'NQ_forces', 'stress': 'NQ_stress'}


def _dump(report: dict) -> None:
    report['finished_at'] = time.time()
    with open(REPORT_FILE, 'w') as handle:
        json.dump(report, handle, indent=1)


def _tool(name: str) -> str:
    """A nequip console script beside this interpreter (the job's environment), else on PATH."""
    candidate = pathlib.Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def _run(command: list[str], log, report: dict, step: str) -> int:
    start = time.perf_counter()
    log.write(f'\n$ {" ".join(command)}\n')
    log.flush()
    process = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    report[f'{step}_wall_time_s'] = time.perf_counter() - start
    report[f'{step}_returncode'] = process.returncode
    return process.returncode


def device(requested: str) -> str:
    if requested != 'auto':
        return requested
    import torch

    return 'cuda' if torch.cuda.is_available() else 'cpu'


def loss_curve(metrics_csv: pathlib.Path) -> list[dict]:
    """Per training epoch: training loss (epoch mean), validation loss and learning rate, from Lightning's CSV log.

    LearningRateMonitor writes its row with an empty epoch just before the epoch it applies to; the validation
    run that follows training (``run: [train, val]``) adds an epoch with no training loss, left out here.
    """
    rows: dict[int, dict] = {}
    pending_lr = None
    with metrics_csv.open() as handle:
        for row in csv.DictReader(handle):
            rates = [float(v) for k, v in row.items() if k.startswith('lr') and v not in (None, '')]
            if row.get('epoch') in (None, ''):
                pending_lr = rates[0] if rates else pending_lr
                continue
            entry = rows.setdefault(int(row['epoch']), {'epoch': int(row['epoch'])})
            if pending_lr is not None:
                entry['learning_rate'] = pending_lr
                pending_lr = None
            for key, name in (('train_loss_epoch/weighted_sum', 'train_loss'),
                              ('val0_epoch/weighted_sum', 'validation_loss')):
                if row.get(key) not in (None, ''):
                    entry[name] = float(row[key])
    return [rows[e] for e in sorted(rows) if 'train_loss' in rows[e]]


def diverged(curve: list[dict]) -> bool:
    return any(not math.isfinite(value) for row in curve for key, value in row.items() if key != 'epoch')


def predict(model_file: str, run_device: str) -> int:
    """Write the validation frames with the model's predictions beside the reference labels."""
    import numpy as np
    from ase.io import read, write
    from ase.stress import full_3x3_to_voigt_6_stress

    from aiida_ferromlip.engines.potentials import nequip_calculator

    calculator = nequip_calculator(model_file, device=run_device)
    frames = read(VALIDATION_FILE, index=':', format='extxyz')
    out = []
    for atoms in frames:
        reference = atoms.calc.results if atoms.calc is not None else {}
        plain = atoms.copy()
        plain.calc = None
        plain.info[ENERGY_KEY] = float(reference['energy'])
        plain.arrays[FORCES_KEY] = np.asarray(reference['forces'])
        if reference.get('stress') is not None:  # 6 Voigt numbers (eV/Å³): 9 would read as a virial
            stress = np.asarray(reference['stress'], dtype=float)
            plain.info[STRESS_KEY] = stress if stress.size == 6 else full_3x3_to_voigt_6_stress(stress.reshape(3, 3))
        atoms.calc = calculator
        plain.info[PREDICTED['energy']] = float(atoms.get_potential_energy())
        plain.arrays[PREDICTED['forces']] = atoms.get_forces()
        plain.info[PREDICTED['stress']] = atoms.get_stress()
        out.append(plain)
    write(PREDICTIONS_FILE, out, format='extxyz')
    return len(out)


def run(report: dict) -> int:
    with open(PARAMETERS_FILE) as handle:
        parameters = json.load(handle)
    run_device = device(parameters.get('device', 'auto'))
    report['device'] = run_device
    accelerator = 'gpu' if run_device.startswith('cuda') else 'cpu'
    with open(TRAIN_LOG, 'w') as log:
        code = _run([_tool('nequip-train'), '-cp', str(pathlib.Path.cwd()), '-cn', CONFIG_FILE.removesuffix('.yaml'),
                     f'hydra.run.dir={RUN_DIR}', f'++trainer.accelerator={accelerator}'], log, report, 'train')
        metrics = sorted(pathlib.Path(RUN_DIR).glob('**/metrics.csv'))
        curve = loss_curve(metrics[-1]) if metrics else []
        with open(LOSS_FILE, 'w') as handle:
            json.dump(curve, handle)
        report['epochs'] = len(curve)
        if diverged(curve):
            report['error'] = 'nan_loss'
            return 3
        checkpoint = pathlib.Path(RUN_DIR) / 'best.ckpt'
        if code != 0 or not checkpoint.exists():
            report['error'] = 'training_failed'
            return 2
        if _run([_tool('nequip-package'), 'build', str(checkpoint), PACKAGE_FILE], log, report, 'package'):
            report['error'] = 'package_failed'
            return 2
        if parameters.get('compile', 'none') == 'aotinductor':
            if _run([_tool('nequip-compile'), PACKAGE_FILE, COMPILED_FILE, '--mode', 'aotinductor',
                     '--device', run_device, '--target', 'ase'], log, report, 'compile'):
                report['error'] = 'compile_failed'
                return 4
    start = time.perf_counter()
    report['num_validation'] = predict(PACKAGE_FILE, run_device)
    report['predict_wall_time_s'] = time.perf_counter() - start
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='ferromlip-nequip', description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    report: dict = {'started_at': process_started_at()}
    try:
        status = run(report)
    except Exception as exception:  # leave a report the parser can explain, whatever broke
        import traceback

        report['error'] = 'exception'
        report['detail'] = f'{type(exception).__name__}: {exception}'
        traceback.print_exc()
        status = 1
    _dump(report)
    return status


def cli() -> None:
    """The console script: ``main``, then an immediate exit (``engines.exit_now``)."""
    exit_now(main)


if __name__ == '__main__':
    cli()
