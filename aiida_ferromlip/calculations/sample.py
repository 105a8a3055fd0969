"""``SampleCalculation``: replica-exchange (i-PI) or temperature-ramp MD with any Potential of the plugin (or the
reference labeller's model, by name: the physics card runs the labeller's own MD where the labeller is that cheap).

The sampler contract: inputs are a Potential node (or a reference-model name), a starting structure and ``parameters``; outputs are one
``TrajectoryData`` per temperature (positions, cells, and arrays ``energies``, ``forces``, ``temperatures``,
``target_temperatures``, ``steps``, plus ``stresses`` where available) and ``statistics`` (exchange acceptance
per neighbouring pair of temperatures, wall time).
"""

from __future__ import annotations

import json

import numpy as np
from aiida import orm

from aiida_ferromlip.calculations.atoms_task import MODEL_TYPES, model_gives_stress, model_spec, model_species
from aiida_ferromlip.calculations.base import FerromlipCalcJob
from aiida_ferromlip.engines import md as engine
from aiida_ferromlip.engines.potentials import SPEC_FILE
from aiida_ferromlip.exit_codes import declare
from aiida_ferromlip.validation import structure_problems



def parameter_problems(parameters: dict, potential) -> list[str]:
    problems = []
    mode = parameters.get('mode')
    if mode not in ('remd', 'ramp'):
        return [f'`mode` must be `remd` or `ramp`, got `{mode}`']
    ensemble = parameters.get('ensemble', 'nvt')
    if ensemble not in engine.ENSEMBLES:
        problems.append(f'`ensemble` must be one of {sorted(engine.ENSEMBLES)}, got `{ensemble}`')
    if ensemble != 'nvt' and not model_gives_stress(potential):
        problems.append(f'the {ensemble.upper()} ensemble needs stress, which this potential does not give')
    if mode == 'remd':
        temperatures = parameters.get('temperatures', [])
        exchange = parameters.get('exchange', True)
        if not isinstance(exchange, bool):
            problems.append(f'`exchange` must be true or false, got `{exchange}`')
        if not temperatures:
            problems.append('`temperatures` must list at least one temperature')
        elif exchange and len(temperatures) < 2:
            problems.append('a replica-exchange temperature ladder needs at least two rungs '
                            '(or `exchange: false` for independent runs)')
        elif any(b <= a for a, b in zip(temperatures, temperatures[1:])) or temperatures[0] <= 0:
            problems.append(f'the temperature ladder must be positive and strictly increasing, got {temperatures}')
    else:
        if min(parameters.get('t_start', 10), parameters.get('t_end', 300)) <= 0:
            problems.append('ramp temperatures must be positive')
        if ensemble != 'nvt':
            problems.append('the temperature ramp runs in NVT (Langevin); use `remd` for NpT/NST sampling')
    for key in ('steps', 'stride'):
        if int(parameters.get(key, 1)) < 1:
            problems.append(f'`{key}` must be a positive integer')
    if float(parameters.get('timestep_fs', 2.0)) <= 0:
        problems.append('`timestep_fs` must be positive')
    limit = parameters.get('stop_below_distance')
    if limit is not None and not (isinstance(limit, (int, float)) and 0 < limit < 2):
        problems.append(f'`stop_below_distance` must be null or a distance in (0, 2) Å, got {limit}')
    return problems


def validate_inputs(inputs, namespace):
    if any(port not in namespace for port in ('potential', 'structure', 'parameters')):
        return None
    potential = inputs['potential']
    problems = parameter_problems(inputs['parameters'].get_dict(), potential)
    try:
        species = model_species(potential)
    except ValueError as exception:  # an unknown reference model
        return str(exception)
    problems += structure_problems(inputs['structure'].get_ase(), label='the starting structure',
                                   supported_species=species, labeller='the potential')
    return '\n'.join(problems) if problems else None


class SampleCalculation(FerromlipCalcJob):
    """Sample configurations by replica-exchange (i-PI) or temperature-ramp MD with a fitted potential."""

    _PARSER = 'ferromlip.sample'
    _OUTPUT_FILENAME = 'ferromlip-md.out'
    _PROTOCOL_FILE = 'sample.yaml'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('potential', valid_type=MODEL_TYPES,
                   help='Any Potential node of the plugin, or a Str naming the reference labeller\'s model.')
        spec.input('structure', valid_type=orm.StructureData, help='Starting configuration (every replica).')
        spec.input('parameters', valid_type=orm.Dict,
                   help='mode (remd | ramp), ensemble (nvt | npt | nst), temperatures (remd ladder, K), '
                        'exchange (remd: swap ensembles, default true; false = independent runs per temperature), '
                        't_start/t_end (ramp, K), pressure_gpa, timestep_fs, steps, stride, exchange_stride, '
                        'thermostat_tau_fs, barostat_tau_fs, num_clients, seed, stop_below_distance (Å: a run '
                        'that brings two atoms closer stops with ERROR_MD_BLOW_UP; null: never).')
        spec.inputs.validator = validate_inputs

        spec.output_namespace('trajectories', valid_type=orm.TrajectoryData, dynamic=True,
                              help='One trajectory per temperature rung, keyed `T_<kelvin>K` (ramp: `ramp`).')
        spec.output('statistics', valid_type=orm.Dict, help='Exchange acceptance per neighbour pair, timings.')
        declare(spec, 'ERROR_MD_FAILED', 'ERROR_CLIENT_LOST', 'ERROR_MISSING_STRESS', 'ERROR_MD_BLOW_UP')

    @classmethod
    def get_builder_from_protocol(cls, code, potential, structure, protocol=None, overrides=None, *, options=None):
        """Builder for sampling with ``potential`` from ``structure``: protocols fast | batio3_gap_nvt |
        batio3_gap_npt | minimalist_ramp; ``overrides`` as ``{'parameters': {...}}``, merged without mutation."""
        return cls.builder_from_protocol(code, {'potential': potential, 'structure': structure}, protocol, overrides,
                                         options=options)

    def prepare_for_submission(self, folder):
        from ase.io import write

        spec, files = model_spec(self.inputs.potential)
        for name, content in files.items():
            with folder.open(name, 'wb') as handle:
                handle.write(content)
        with folder.open(SPEC_FILE, 'w') as handle:
            json.dump(spec, handle)
        with folder.open(engine.STRUCTURE_FILE, 'w') as handle:
            write(handle, self.inputs.structure.get_ase(), format='extxyz')
        with folder.open(engine.PARAMETERS_FILE, 'w') as handle:
            json.dump(self.inputs.parameters.get_dict(), handle, indent=1)

        return self.calcinfo(['run'], [engine.REPORT_FILE, 'trajectory_*.extxyz', engine.IPI_LOG])


def trajectory_key(parameters: dict, index: int) -> str:
    if parameters['mode'] == 'ramp':
        return 'ramp'
    return f'T_{int(round(float(parameters["temperatures"][index]))):04d}K'


def trajectory_from_frames(frames) -> orm.TrajectoryData:
    """TrajectoryData with positions/cells and the MD's energies, forces, temperatures (and stress if any)."""
    trajectory = orm.TrajectoryData()
    trajectory.set_trajectory(
        symbols=frames[0].get_chemical_symbols(),
        positions=np.array([f.positions for f in frames]),
        cells=np.array([f.cell.array for f in frames]),
        stepids=np.array([f.info['step'] for f in frames], dtype=int),
        times=np.array([f.info['time_ps'] for f in frames]),
        pbc=[bool(x) for x in frames[0].pbc],
    )
    trajectory.set_array('energies', np.array([f.info['potential_energy'] for f in frames]))
    trajectory.set_array('forces', np.array([f.arrays['md_forces'] for f in frames]))
    trajectory.set_array('temperatures', np.array([f.info['temperature'] for f in frames]))
    trajectory.set_array('target_temperatures', np.array([f.info['target_temperature'] for f in frames]))
    if all('md_stress' in f.info for f in frames):
        trajectory.set_array('stresses', np.array([f.info['md_stress'] for f in frames]))
    return trajectory
