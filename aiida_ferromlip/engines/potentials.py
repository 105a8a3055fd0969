"""Rebuild a potential's ASE calculator on the computer where a job runs, from the files its node wrote.

A Potential node writes its files and a small ``potential.json`` spec into the job folder
(``Potential.job_files``); engines call ``calculator_from_spec`` — the only place that knows model families.
"""

from __future__ import annotations

import contextlib
import json

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

SPEC_FILE = 'potential.json'


def calculator_from_spec(spec: dict | str, gap_variance: bool = False):
    """ASE calculator for ``spec`` (a dict, or the path of a ``potential.json``); with ``gap_variance`` a GAP that
    also reports quippy's predictive variance (``GapVarianceCalculator``)."""
    if isinstance(spec, str):
        with open(spec) as handle:
            spec = json.load(handle)
    kind = spec['kind']
    if gap_variance and kind != 'gap':
        raise ValueError(f"quippy's predictive variance needs a GAP, not a `{kind}` potential")
    if kind == 'gap' and gap_variance:
        return GapVarianceCalculator(spec['file'])
    if kind == 'gap':
        return gap_calculator(spec['file'])
    if kind == 'nequip':
        return nequip_calculator(spec['file'], device=spec.get('device', 'cpu'))
    if kind == 'reference':
        from aiida_ferromlip.engines.reference import make_calculator

        return make_calculator(spec.get('model', '7net-0'), spec.get('modal'))
    if kind == 'committee':
        return CommitteeCalculator([calculator_from_spec(member) for member in spec['members']])
    raise ValueError(f'unknown potential kind `{kind}` in {SPEC_FILE}')


class CommitteeCalculator(Calculator):
    """The mean of several potentials, and how much they disagree: a committee for uncertainty-driven selection.

    Energy, forces and stress are the members' means. ``results`` also holds ``force_deviations`` (per atom: the
    root-mean-square over members of the distance between a member's force and the mean force, eV/Å — DP-GEN's
    "model deviation"), ``max_force_deviation`` (their maximum) and ``energy_deviation`` (standard deviation of the
    members' energies, eV/atom).
    """

    implemented_properties = ['energy', 'free_energy', 'forces', 'stress']
    #: results beyond ASE's own properties, which the task engine copies into its rows
    deviation_properties = ('max_force_deviation', 'energy_deviation')

    def __init__(self, members):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f'a committee needs at least two members, got {len(members)}')
        self.members = list(members)

    def calculate(self, atoms=None, properties=('energy',), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        energies, forces, stresses = [], [], []
        for member in self.members:
            copy = self.atoms.copy()
            copy.calc = member
            energies.append(copy.get_potential_energy())
            forces.append(copy.get_forces())
            if 'stress' in properties:
                stresses.append(copy.get_stress(voigt=True))
        energies, forces = np.array(energies), np.array(forces)
        mean_forces = forces.mean(axis=0)
        deviations = np.sqrt(((forces - mean_forces) ** 2).sum(axis=2).mean(axis=0))
        self.results = {'energy': float(energies.mean()), 'free_energy': float(energies.mean()),
                        'forces': mean_forces, 'force_deviations': deviations,
                        'max_force_deviation': float(deviations.max()) if len(deviations) else 0.0,
                        'energy_deviation': float(energies.std() / max(len(self.atoms), 1))}
        if stresses:
            self.results['stress'] = np.mean(stresses, axis=0)


class GapVarianceCalculator(Calculator):
    """A GAP that also reports how uncertain it is: quippy's own Gaussian-process predictive variance of every
    atom's local energy (``calc_args=local_gap_variance``), for the uncertainty selectors without a committee.

    ``results`` hold energy, forces and stress (one quippy evaluation, as ``gap_calculator``) and
    ``max_local_energy_std``: the largest per-atom predictive standard deviation (eV).
    """

    implemented_properties = ['energy', 'free_energy', 'forces', 'stress']
    #: results beyond ASE's own properties, which the task engine copies into its rows
    deviation_properties = ('max_local_energy_std',)

    def __init__(self, path: str):
        from quippy.potential import Potential

        super().__init__()
        self.potential = Potential(param_filename=path, calc_args='local_gap_variance')
        self.potential.set_default_properties(['energy', 'forces', 'stress'])

    def calculate(self, atoms=None, properties=('energy',), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        copy = self.atoms.copy()
        copy.calc = self.potential
        energy = copy.get_potential_energy()
        self.results = {'energy': energy, 'free_energy': energy, 'forces': copy.get_forces(),
                        'stress': copy.get_stress(voigt=True)}
        variance = np.asarray(self.potential.extra_results['atoms']['local_gap_variance'], dtype=float)
        # a variance a hair below zero is round-off of a frame the GAP knows: no uncertainty
        self.results['max_local_energy_std'] = float(np.sqrt(np.clip(variance, 0, None).max()))


def gap_calculator(path: str):
    """quippy's ``Potential`` for a GAP XML that computes energy, forces and stress in one call.

    quippy computes only its default properties (energy and forces) per call; ASE asks for the stress separately
    (``get_stress`` after ``get_forces``: i-PI's NST/NPT clients every step, the task engine, ``predict``), and
    quippy then runs the whole descriptor and kernel evaluation a second time for the virial. With the stress among
    the defaults one call returns all three (same numbers; docs/throughput.md has the timing).
    """
    from quippy.potential import Potential

    calculator = Potential(param_filename=path)
    calculator.set_default_properties(['energy', 'forces', 'stress'])
    return calculator


def nequip_calculator(path: str, device: str = 'cpu', compiled: bool = False):
    """NequIPCalculator from a ``nequip-package`` archive (eager) or an AOTInductor build (``compiled``).

    The model's type names are the chemical symbols (the plugin's configs map each species to itself).
    """
    calculator_class = _scoped_nequip_calculator_class()
    with _process_global_state():
        if compiled:
            return calculator_class.from_compiled_model(path, device=device, chemical_species_to_atom_type_map=True)
        # `_from_saved_model` is nequip's loader for packaged models (the public `from_compiled_model` takes only
        # compiled builds, which are tied to one machine type); nequip's own integrations call it the same way.
        return calculator_class._from_saved_model(path, device=device, chemical_species_to_atom_type_map=True)


def _scoped_nequip_calculator_class():
    """NequIPCalculator that runs with torch's default dtype at float64 (what nequip expects: an AOTInductor
    build returns NaN otherwise, measured) only while it calculates, and gives the process its default back."""
    import torch
    from nequip.integrations.ase import NequIPCalculator

    class ScopedNequIPCalculator(NequIPCalculator):
        def calculate(self, *args, **kwargs):
            dtype = torch.get_default_dtype()
            torch.set_default_dtype(torch.float64)
            try:
                return super().calculate(*args, **kwargs)
            finally:
                torch.set_default_dtype(dtype)

    return ScopedNequIPCalculator


@contextlib.contextmanager
def _process_global_state():
    """Undo what loading a nequip model does to the whole process: it sets torch's default dtype to float64 and
    reseeds every global RNG. In a daemon worker or a test session that also runs SevenNet, the float64 default
    breaks SevenNet's model loading ("Float did not match Double", measured), and the reseed would silently
    change other code's random numbers. The calculator sets float64 itself while it calculates."""
    import random

    import numpy as np
    import torch

    dtype = torch.get_default_dtype()
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
