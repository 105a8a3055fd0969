"""Rebuild a potential's ASE calculator on the computer where a job runs, from the files its node wrote.

A Potential node writes its files and a small ``potential.json`` spec into the job folder
(``Potential.job_files``); engines call ``calculator_from_spec`` — the only place that knows model families.
"""

from __future__ import annotations

import json

SPEC_FILE = 'potential.json'


def calculator_from_spec(spec: dict | str):
    """ASE calculator for ``spec`` (a dict, or the path of a ``potential.json``)."""
    if isinstance(spec, str):
        with open(spec) as handle:
            spec = json.load(handle)
    kind = spec['kind']
    if kind == 'gap':
        from quippy.potential import Potential

        return Potential(param_filename=spec['file'])
    if kind == 'nequip':
        return nequip_calculator(spec['file'], device=spec.get('device', 'cpu'))
    if kind == 'reference':
        from aiida_ferromlip.engines.reference import make_calculator

        return make_calculator(spec.get('model', '7net-0'), spec.get('modal'))
    raise ValueError(f'unknown potential kind `{kind}` in {SPEC_FILE}')


def nequip_calculator(path: str, device: str = 'cpu', compiled: bool = False):
    """NequIPCalculator from a ``nequip-package`` archive (eager) or an AOTInductor build (``compiled``).

    The model's type names are the chemical symbols (the plugin's configs map each species to itself).
    """
    from nequip.integrations.ase import NequIPCalculator

    if compiled:
        return NequIPCalculator.from_compiled_model(path, device=device, chemical_species_to_atom_type_map=True)
    # `_from_saved_model` is nequip's loader for packaged models (the public `from_compiled_model` takes only
    # compiled builds, which are tied to one machine type); nequip's own integrations call it the same way.
    return NequIPCalculator._from_saved_model(path, device=device, chemical_species_to_atom_type_map=True)
