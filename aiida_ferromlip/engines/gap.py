"""``ferromlip-gap``: fit a GAP with ``gap_fit`` within a memory budget, then validate it on held-out frames.

The executable behind ``GapFitCalculation`` (no AiiDA imports: it runs where the job lands). Steps:

1. sparse environments by farthest-point sampling on SOAP (featomic + scikit-matter) for descriptors that ask
   for ``sparse_method: fps`` — gap_fit has no FPS of its own, so indices are passed with ``index_file``;
2. a memory plan: gap_fit's ``dryrun=T`` estimate (accurate to ~2 % here) decides how many frames keep their
   virials. Descriptor derivatives dominate the peak, and a virial costs twice what forces cost
   (``shared/facts/gap_fit_memory.md``); when the estimate exceeds the budget the virials of a growing share
   of frames are dropped (never forces or energies), and the choice is reported;
3. the fit itself, timed, with the peak RSS of the gap_fit process;
4. predictions of the fitted potential on the validation (held-out) frames, for the parser's metrics.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import resource
import subprocess
import sys
import time

import numpy as np

from aiida_ferromlip.engines import exit_now, process_started_at

POTENTIAL_FILE = 'gap.xml'
FIT_LOG = 'gap_fit.log'
TRAIN_FILE = 'train.extxyz'
FIT_FILE = 'train_fit.extxyz'
VALIDATION_FILE = 'validation.extxyz'
PREDICTIONS_FILE = 'predictions.extxyz'
REPORT_FILE = 'report.json'
PARAMETERS_FILE = 'parameters.json'

ENERGY_KEY, FORCES_KEY, VIRIAL_KEY = 'REF_energy', 'REF_forces', 'REF_virial'

_UNITS = {'B': 1, 'KB': 1024, 'MB': 1024**2, 'GB': 1024**3, 'TB': 1024**4}


# ------------------------------------------------------------------------------------------ command line
def _fmt(value) -> str:
    if isinstance(value, bool):
        return 'T' if value else 'F'
    if isinstance(value, (list, tuple)):  # a per-species vector (soap_turbo's alpha_max, atom_sigma_r, ...)
        return '{{' + ' '.join(_fmt(item) for item in value) + '}}'
    return str(value)


def descriptor_strings(descriptors: list[dict], species_z: list[int], sparse_files: dict | None = None,
                       available: dict | None = None) -> list[str]:
    """gap_fit descriptor strings for ``descriptors`` (dicts as in the protocols) and the species present.

    A SOAP with ``per_species: true`` becomes one descriptor per centre species, each with its own sparse
    budget (``n_sparse`` may be ``{default: 250, O: 500}``) — the only way to give gap_fit exact per-species
    budgets (BaTiO3-GAP paper: 250 Ba, 250 Ti, 500 O).
    """
    from ase.data import chemical_symbols

    sparse_files = sparse_files or {}
    available = available or {}
    explicit, expanded = [], []
    for index, descriptor in enumerate(descriptors):
        options = {k: v for k, v in descriptor.items() if k not in ('type', 'per_species', 'n_sparse', 'sparse_method')}
        kind = descriptor['type']
        method = descriptor.get('sparse_method', 'cur_points' if kind.startswith('soap') else 'uniform')
        if kind == 'soap' and descriptor.get('per_species'):
            for z in species_z:
                body = {**options, 'add_species': False, 'n_species': len(species_z),
                        'species_Z': '{{' + ' '.join(map(str, species_z)) + '}}', 'Z': z,
                        'n_sparse': min(sparse_count(descriptor['n_sparse'], chemical_symbols[z]),
                                        available.get(z, 10**9))}
                if method == 'fps':
                    body.update(sparse_method='index_file', sparse_file=sparse_files[(index, z)])
                else:
                    body['sparse_method'] = method
                explicit.append(kind + ' ' + ' '.join(f'{k}={_fmt(v)}' for k, v in body.items()))
        else:
            if method == 'fps':
                raise ValueError(f'descriptor {index} ({kind}): `fps` sparse selection needs a per-species SOAP')
            body = {**options, 'n_sparse': descriptor['n_sparse'], 'sparse_method': method}
            body.setdefault('add_species', True)
            expanded.append(kind + ' ' + ' '.join(f'{k}={_fmt(v)}' for k, v in body.items()))
    # Order matters to gap_fit 0.10.3: a descriptor that `add_species=T` expands, placed *before* one with
    # `sparse_method=index_file`, aborts ("descriptor object not initialised", measured here). Descriptors with
    # explicit species therefore go first; the energy model is a sum, so the order changes nothing else.
    strings = explicit + expanded
    return strings


def sparse_count(n_sparse, symbol: str) -> int:
    """Sparse budget of one species: an int for all, or ``{symbol: n, default: n}``."""
    if isinstance(n_sparse, dict):
        return int(n_sparse.get(symbol, n_sparse['default']))
    return int(n_sparse)


#: Environment variable naming the gap_fit to run instead of the wheel's (set it in the code's or the job's
#: ``prepend_text``): a site's own QUIP build (the quippy-ase wheel's gap_fit is neither OpenMP nor MPI built), or a
#: wrapper script that sets limits or modules first.
GAP_FIT_VARIABLE = 'FERROMLIP_GAP_FIT'


def gap_fit_executable() -> str:
    """``$FERROMLIP_GAP_FIT`` when set; else gap_fit of this environment (the quippy-ase wheel puts it beside the
    interpreter), else from PATH."""
    import os
    import shutil

    if os.environ.get(GAP_FIT_VARIABLE):
        return os.environ[GAP_FIT_VARIABLE]
    beside = os.path.join(os.path.dirname(sys.executable), 'gap_fit')
    return beside if os.path.exists(beside) else (shutil.which('gap_fit') or 'gap_fit')


def available_environments(parameters: dict, frames) -> dict[int, int]:
    """Atoms of each species in ``frames`` when ``clip_sparse`` is set (sparse budgets are capped at these), else {}.

    A loop that starts from a few frames cannot offer the BaTiO3-GAP paper's 250 environments per cation yet; clipping
    lets the same preset grow with the data instead of failing until enough frames exist.
    """
    if not parameters.get('clip_sparse', False):
        return {}
    counts: dict[int, int] = {}
    for atoms in frames:
        for z in atoms.numbers:
            counts[int(z)] = counts.get(int(z), 0) + 1
    return counts


def gap_fit_command(parameters: dict, species_z: list[int], at_file: str, sparse_files=None, dryrun=False,
                    available: dict | None = None) -> list[str]:
    gap = ' : '.join(descriptor_strings(parameters['descriptors'], species_z, sparse_files, available))
    sigma = ' '.join(str(s) for s in parameters['default_sigma'])
    command = [
        gap_fit_executable(), f'at_file={at_file}', f'gap={{{gap}}}', f'default_sigma={{{sigma}}}',
        f'e0_method={parameters.get("e0_method", "average")}',
        f'energy_parameter_name={ENERGY_KEY}', f'force_parameter_name={FORCES_KEY}',
        f'virial_parameter_name={VIRIAL_KEY}', 'sparse_separate_file=F', f'gp_file={POTENTIAL_FILE}',
        f'rnd_seed={int(parameters.get("seed", 0)) + 1}', 'do_copy_at_file=F',
    ]
    if parameters.get('frame_sigma'):  # per kind of frame (config_type, set from the frame keys)
        kinds = ':'.join(f'{name}:' + ':'.join(str(v) for v in values)
                         for name, values in parameters['frame_sigma'].items())
        command.append(f'config_type_sigma={{{kinds}}}')
    command += [f'{k}={_fmt(v)}' for k, v in parameters.get('gap_fit_options', {}).items()]
    if dryrun:
        command.append('dryrun=T')
    return command


# --------------------------------------------------------------------------------------------- memory
def parse_peak_estimate(log: str) -> float | None:
    """Bytes of gap_fit's ``PEAK`` memory estimate in a dryrun log, or ``None``."""
    match = re.search(r'^\s*PEAK\s+([\d.]+)\s*([KMGT]?B)\s*$', log, re.MULTILINE)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else None


def write_fit_file(frames, path: str, virial_fraction: float, seed: int) -> list[int]:
    """Write ``frames`` for gap_fit, keeping the virial of ``virial_fraction`` of them (equispaced choice)."""
    from ase.io import write

    n_keep = int(round(virial_fraction * len(frames)))
    keep = set(np.linspace(0, len(frames) - 1, n_keep).round().astype(int).tolist()) if n_keep else set()
    out = []
    for i, atoms in enumerate(frames):
        atoms = atoms.copy()
        if i not in keep:
            atoms.info.pop(VIRIAL_KEY, None)
        out.append(atoms)
    write(path, out, format='extxyz')
    # libAtoms caches frame offsets in `<file>.idx` and trusts it when the file is rewritten: a stale index
    # (another virial share from the previous dryrun) makes gap_fit fail with an IO error in xyz.c.
    import os

    if os.path.exists(path + '.idx'):
        os.remove(path + '.idx')
    return sorted(keep)


class DryrunFailed(RuntimeError):
    """gap_fit's dryrun stopped without a memory estimate: its log (gap_fit.log) says why."""

    def __init__(self, returncode: int):
        super().__init__(f'gap_fit dryrun failed with return code {returncode}; see gap_fit.log')
        self.returncode = returncode


def dryrun_peak(parameters, species_z, sparse_files, frames, fraction, seed) -> float:
    write_fit_file(frames, FIT_FILE, fraction, seed)
    result = subprocess.run(gap_fit_command(parameters, species_z, FIT_FILE, sparse_files, dryrun=True,
                                            available=available_environments(parameters, frames)),
                            capture_output=True, text=True)
    peak = parse_peak_estimate(result.stdout)
    if peak is None:
        with open(FIT_LOG, 'w') as handle:
            handle.write(result.stdout + result.stderr)
        raise DryrunFailed(result.returncode)
    return peak


def plan_memory(parameters, species_z, sparse_files, frames) -> dict:
    """Largest share of frames that keep their virial such that gap_fit's estimated peak fits the budget."""
    budget = float(parameters.get('max_memory_gb', 16)) * 1024**3
    requested = parameters.get('virial_fraction', 'auto')
    seed = int(parameters.get('seed', 0))
    with_virials = sum(VIRIAL_KEY in a.info for a in frames)
    if requested != 'auto' or with_virials == 0:
        fraction = 1.0 if requested == 'auto' else float(requested)
        peak = dryrun_peak(parameters, species_z, sparse_files, frames, fraction, seed)
        return {'virial_fraction': fraction, 'estimated_peak_bytes': peak, 'budget_bytes': budget,
                'fits_budget': peak <= budget}
    full = dryrun_peak(parameters, species_z, sparse_files, frames, 1.0, seed)
    if full <= budget:
        return {'virial_fraction': 1.0, 'estimated_peak_bytes': full, 'budget_bytes': budget, 'fits_budget': True}
    none = dryrun_peak(parameters, species_z, sparse_files, frames, 0.0, seed)
    if none > budget:
        return {'virial_fraction': 0.0, 'estimated_peak_bytes': none, 'budget_bytes': budget, 'fits_budget': False}
    # The peak is linear in the number of frames with virials: interpolate, then confirm with gap_fit itself.
    fraction = math.floor(100 * (budget - none) / (full - none)) / 100
    while fraction > 0:
        peak = dryrun_peak(parameters, species_z, sparse_files, frames, fraction, seed)
        if peak <= budget:
            return {'virial_fraction': fraction, 'estimated_peak_bytes': peak, 'budget_bytes': budget,
                    'fits_budget': True, 'estimate_all_virials_bytes': full}
        fraction = math.floor(100 * fraction * 0.9) / 100
    return {'virial_fraction': 0.0, 'estimated_peak_bytes': none, 'budget_bytes': budget, 'fits_budget': True,
            'estimate_all_virials_bytes': full}


# ------------------------------------------------------------------------------------------- sparsity
def fps_sparse_files(parameters: dict, frames, species_z) -> tuple[dict, dict]:
    """Write one index file per (descriptor, species) whose SOAP asks for FPS; return paths and FPS distances."""
    from ase.data import chemical_symbols

    from aiida_ferromlip.analysis.soap import atomic_soap, farthest_point_sampling, soap_hypers

    files, distances = {}, {}
    for index, descriptor in enumerate(parameters['descriptors']):
        if descriptor.get('sparse_method') != 'fps':
            continue
        hypers = soap_hypers(descriptor['cutoff'], descriptor['n_max'], descriptor['l_max'],
                             descriptor.get('atom_sigma', 0.5), descriptor.get('cutoff_transition_width', 0.5))
        features = atomic_soap(frames, hypers)
        available = available_environments(parameters, frames)
        for z in species_z:
            n = min(sparse_count(descriptor['n_sparse'], chemical_symbols[z]), available.get(z, 10**9))
            picked, hausdorff = farthest_point_sampling(features[z][0], n)
            path = f'sparse_{index}_{chemical_symbols[z]}.txt'
            np.savetxt(path, np.sort(picked) + 1, fmt='%d')  # gap_fit counts environments from 1
            files[(index, z)] = path
            distances[f'{index}:{chemical_symbols[z]}'] = float(hausdorff[-1])
    return files, distances


# ------------------------------------------------------------------------------------------- predict
def predict(potential_file: str, frames) -> list:
    """Frames with the GAP's ``GAP_energy``, ``GAP_forces`` and ``GAP_stress`` (Voigt, eV/Å^3) added."""
    from aiida_ferromlip.engines.potentials import gap_calculator

    calculator = gap_calculator(potential_file)
    out = []
    for atoms in frames:
        atoms = atoms.copy()
        probe = atoms.copy()
        probe.calc = calculator
        atoms.info['GAP_energy'] = float(probe.get_potential_energy())
        atoms.arrays['GAP_forces'] = np.array(probe.get_forces())
        atoms.info['GAP_stress'] = np.array(probe.get_stress(voigt=True))
        out.append(atoms)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='ferromlip-gap', description=__doc__.splitlines()[0])
    parser.add_argument('--parameters', default=PARAMETERS_FILE)
    args = parser.parse_args(argv)
    report: dict = {'started_at': process_started_at()}
    try:
        return run(args.parameters, report)
    except Exception as exception:  # leave a report the parser can explain, whatever broke
        import traceback

        report['error'] = 'exception'
        report['detail'] = f'{type(exception).__name__}: {exception}'
        _dump(report)
        traceback.print_exc()
        return 1


def run(parameters_file: str, report: dict) -> int:
    """The fit of ``main``; fills ``report`` as it goes."""
    from ase.io import read, write

    with open(parameters_file) as handle:
        parameters = json.load(handle)
    frames = read(TRAIN_FILE, index=':', format='extxyz')
    species_z = sorted({int(z) for atoms in frames for z in atoms.numbers}, reverse=True)
    report['num_train'] = len(frames)

    start = time.perf_counter()
    sparse_files, fps_distances = fps_sparse_files(parameters, frames, species_z)
    report['fps_time_s'] = time.perf_counter() - start
    report['fps_last_distance'] = fps_distances

    try:
        plan = plan_memory(parameters, species_z, sparse_files, frames)
    except DryrunFailed as failure:  # parameters gap_fit rejects: the parser classifies the log
        report['gap_fit_returncode'] = failure.returncode
        report['failed_in'] = 'dryrun'
        _dump(report)
        return 2
    report['memory_plan'] = plan
    if not plan['fits_budget']:
        report['error'] = 'memory_budget'
        _dump(report)
        print(f'gap_fit would need {plan["estimated_peak_bytes"] / 1024**3:.1f} GiB even without virials, over '
              f'the budget of {plan["budget_bytes"] / 1024**3:.1f} GiB', file=sys.stderr)
        return 3
    report['frames_with_virial'] = write_fit_file(frames, FIT_FILE, plan['virial_fraction'], parameters.get('seed', 0))

    command = gap_fit_command(parameters, species_z, FIT_FILE, sparse_files,
                              available=available_environments(parameters, frames))
    report['command'] = ' '.join(command)
    start = time.perf_counter()
    with open(FIT_LOG, 'w') as log:
        returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    report['fit_wall_time_s'] = time.perf_counter() - start
    report['peak_rss_bytes'] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    report['gap_fit_returncode'] = returncode
    if returncode != 0:
        _dump(report)
        return 2

    validation = read(VALIDATION_FILE, index=':', format='extxyz') if _nonempty(VALIDATION_FILE) else []
    start = time.perf_counter()
    write(PREDICTIONS_FILE, predict(POTENTIAL_FILE, validation), format='extxyz')
    report['num_validation'] = len(validation)
    report['predict_time_s'] = time.perf_counter() - start
    _dump(report)
    print(f'GAP fitted on {len(frames)} frames in {report["fit_wall_time_s"]:.1f} s, '
          f'peak RSS {report["peak_rss_bytes"] / 1024**3:.2f} GiB', flush=True)
    return 0


def _nonempty(path: str) -> bool:
    import os

    return os.path.exists(path) and os.path.getsize(path) > 0


def _dump(report: dict) -> None:
    report['finished_at'] = time.time()
    with open(REPORT_FILE, 'w') as handle:
        json.dump(report, handle, indent=1)


def cli() -> None:
    """The console script: ``main``, then an immediate exit (``engines.exit_now``)."""
    exit_now(main)


if __name__ == '__main__':
    cli()
