"""``ferromlip-md``: molecular dynamics that samples configurations with any potential of the plugin.

Two modes, chosen by ``parameters.json``:

* ``remd`` — replica-exchange MD with i-PI (BaTiO3-GAP paper): a ``<system_template>`` makes one system per temperature,
  ``<smotion mode='remd'>`` swaps their ensembles (``exchange: false`` leaves it out: independent runs, one per
  temperature, as the phase-sequence benchmark uses), and ASE socket clients (``ferromlip-md client``) evaluate the
  potential. i-PI writes one trajectory per *system*; each system's ensemble temperature is logged with every
  frame, so frames are regrouped here into one trajectory per *temperature*. Exchange attempts and acceptances
  are read from i-PI's log and reported per pair of temperatures.
* ``ramp`` — the minimalist paper's on-the-fly protocol: Langevin MD whose target temperature rises linearly (10 -> 300 K,
  2 fs steps) from one polymorph, with ASE.

With ``stop_below_distance`` (Å) set, every force call first checks that no two atoms are closer than that: a run
that blows up (a too long timestep, a potential with a hole) stops there with ``error_kind: blow_up`` and the
step, instead of producing a trajectory of garbage (``SampleBaseWorkChain`` then halves the timestep).

Outputs: ``trajectory_<k>.extxyz`` per temperature rung (ramp: one), and ``report.json``.
No AiiDA imports: this runs where the job lands.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

import numpy as np

from aiida_ferromlip.engines import exit_now, process_started_at

STRUCTURE_FILE = 'structure.extxyz'
PARAMETERS_FILE = 'parameters.json'
REPORT_FILE = 'report.json'
IPI_INPUT = 'ipi_input.xml'
IPI_LOG = 'ipi.log'
PREFIX = 'simulation'
BLOW_UP_FILE = 'blow_up.json'

#: i-PI's dynamics mode and barostat for each ensemble name of the plugin.
ENSEMBLES = {'nvt': ('nvt', None), 'npt': ('npt', 'isotropic'), 'nst': ('nst', 'anisotropic')}


# ------------------------------------------------------------------------------------------------ REMD
def ipi_input(parameters: dict, address: str) -> str:
    """i-PI input: one system per temperature from a template, REMD swaps, thermostat/barostat per ensemble."""
    temperatures = parameters['temperatures']
    stride = int(parameters.get('stride', 10))
    mode, barostat = ENSEMBLES[parameters.get('ensemble', 'nvt')]
    tau_t = parameters.get('thermostat_tau_fs', 100)
    tau_p = parameters.get('barostat_tau_fs', 500)
    pressure = ''
    barostat_xml = ''
    if barostat:
        pressure = f"<pressure units='gigapascal'>{parameters.get('pressure_gpa', 0.0)}</pressure>"
        if barostat == 'anisotropic':
            # NST: fully flexible cell under a hydrostatic external stress.
            p = parameters.get('pressure_gpa', 0.0)
            pressure = f"<stress units='gigapascal'>[{p}, 0, 0, 0, {p}, 0, 0, 0, {p}]</stress>"
        barostat_xml = (f"<barostat mode='{barostat}'><tau units='femtosecond'>{tau_p}</tau>"
                        f"<thermostat mode='langevin'><tau units='femtosecond'>{tau_t}</tau></thermostat>"
                        f"<h0 units='angstrom'>CELL</h0></barostat>" if barostat == 'anisotropic' else
                        f"<barostat mode='{barostat}'><tau units='femtosecond'>{tau_p}</tau>"
                        f"<thermostat mode='langevin'><tau units='femtosecond'>{tau_t}</tau></thermostat></barostat>")
    # without exchanges the systems of the template run side by side as independent MD, one per temperature
    smotion = (f"  <smotion mode='remd'><remd><stride>{parameters.get('exchange_stride', 10)}</stride></remd></smotion>\n"
               if parameters.get('exchange', True) else '')
    instances = '\n'.join(f'    <instance>[ R{k}, {t} ]</instance>' for k, t in enumerate(temperatures))
    properties = ('[ step, time{picosecond}, temperature{kelvin}, potential{electronvolt}, '
                  'ensemble_temperature{kelvin}, volume{angstrom3} ]')
    return f"""<simulation verbosity='high' safe_stride='{10 * stride}'>
  <output prefix='{PREFIX}'>
    <properties stride='{stride}' filename='out'> {properties} </properties>
    <trajectory filename='pos' stride='{stride}' format='ase'> positions </trajectory>
    <trajectory filename='frc' stride='{stride}' format='ase'> forces </trajectory>
  </output>
  <total_steps>{int(parameters['steps'])}</total_steps>
  <prng><seed>{int(parameters.get('seed', 0)) + 1}</seed></prng>
  <ffsocket name='potential' mode='unix' pbc='false'><address>{address}</address><latency>1e-4</latency></ffsocket>
  <system_template>
    <labels>[ PREFIX, TEMP ]</labels>
{instances}
    <template>
      <system prefix='PREFIX'>
        <initialize nbeads='1'>
          <file mode='ase' units='angstrom'>{STRUCTURE_FILE}</file>
          <velocities mode='thermal' units='kelvin'>TEMP</velocities>
        </initialize>
        <forces><force forcefield='potential'/></forces>
        <ensemble><temperature units='kelvin'>TEMP</temperature>{pressure}</ensemble>
        <motion mode='dynamics'>
          <dynamics mode='{mode}'>
            <timestep units='femtosecond'>{parameters.get('timestep_fs', 2.0)}</timestep>
            <thermostat mode='svr'><tau units='femtosecond'>{tau_t}</tau></thermostat>
            {barostat_xml}
          </dynamics>
        </motion>
      </system>
    </template>
  </system_template>
{smotion}</simulation>
"""


def exchange_statistics(log: str, num_temperatures: int) -> dict:
    """Attempts and acceptances per pair of temperature indices, from i-PI's high-verbosity log.

    i-PI swaps *ensembles* between systems ``i`` and ``j``; which temperature each system holds is tracked here
    from the sequence of accepted swaps (all systems start at their own rung).
    """
    holds = list(range(num_temperatures))  # temperature index held by each system
    attempts = np.zeros((num_temperatures, num_temperatures), dtype=int)
    accepted = np.zeros_like(attempts)
    for match in re.finditer(r'@ PT:\s+(SWAPPING replicas|SWAP REJECTED BETWEEN replicas)\s+(\d+)\s+and\s+(\d+)', log):
        i, j = int(match.group(2)), int(match.group(3))
        a, b = sorted((holds[i], holds[j]))
        attempts[a, b] += 1
        if match.group(1).startswith('SWAPPING'):
            accepted[a, b] += 1
            holds[i], holds[j] = holds[j], holds[i]
    neighbours = []
    for k in range(num_temperatures - 1):
        n, m = int(attempts[k, k + 1]), int(accepted[k, k + 1])
        neighbours.append({'pair': [k, k + 1], 'attempted': n, 'accepted': m, 'acceptance': m / n if n else None})
    return {'attempted_total': int(attempts.sum()), 'accepted_total': int(accepted.sum()),
            'neighbour_pairs': neighbours, 'attempts_matrix': attempts.tolist(), 'accepted_matrix': accepted.tolist()}


def run_remd(parameters: dict, report: dict) -> list[list]:
    """Run i-PI with socket clients; return frames grouped per temperature rung."""
    from ase.io import read, write

    temperatures = [float(t) for t in parameters['temperatures']]
    address = f'ferromlip_{os.getpid()}_{int(time.time() * 1000) % 100000}'
    socket_path = f'/tmp/ipi_{address}'
    if os.path.exists(socket_path):
        os.remove(socket_path)
    # i-PI works with an upper-triangular cell matrix (its h = ASE cell transposed) and rotates any other cell;
    # the NST barostat's reference cell h0 must already be in that form. Rotate the start structure to ASE's
    # standard form once, so every output frame and h0 share the same orientation.
    atoms = read(STRUCTURE_FILE)
    cell, _ = atoms.cell.standard_form()
    atoms.set_cell(cell, scale_atoms=True)
    write(STRUCTURE_FILE, atoms, format='extxyz')
    cell = atoms.cell.array
    xml = ipi_input(parameters, address).replace('CELL', '[' + ', '.join(f'{x:.10f}' for x in cell.T.ravel()) + ']')
    with open(IPI_INPUT, 'w') as handle:
        handle.write(xml)

    ipi = os.path.join(os.path.dirname(sys.executable), 'i-pi')
    with open(IPI_LOG, 'w') as log:
        server = subprocess.Popen([ipi if os.path.exists(ipi) else 'i-pi', IPI_INPUT], stdout=log,
                                  stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while not os.path.exists(socket_path):
        if server.poll() is not None or time.time() > deadline:
            raise RuntimeError(f'i-PI did not open its socket (return code {server.poll()}); see {IPI_LOG}')
        time.sleep(0.2)
    num_clients = int(parameters.get('num_clients') or min(len(temperatures), os.cpu_count() or 1))
    clients = [subprocess.Popen([sys.executable, '-m', 'aiida_ferromlip.engines.md', 'client', '--address', address],
                                stdout=open(f'client_{k}.log', 'w'), stderr=subprocess.STDOUT)
               for k in range(num_clients)]
    # i-PI waits for clients forever: a client that dies mid-run must end the job, not leave i-PI hanging (or
    # finishing on the survivors while the loss goes unsaid)
    lost = None
    while server.poll() is None:
        failed = [(k, c.returncode) for k, c in enumerate(clients) if c.poll() not in (None, 0)]
        if failed:
            lost = failed
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
            break
        time.sleep(0.5)
    returncode = server.returncode
    for client in clients:
        try:
            client.wait(timeout=30)
        except subprocess.TimeoutExpired:
            client.kill()
    if os.path.exists(socket_path):
        os.remove(socket_path)
    # exit codes after i-PI finished are kept but not fatal: a client may see the socket reset as i-PI shuts down
    report['client_exit_codes'] = [c.returncode for c in clients]
    if os.path.exists(BLOW_UP_FILE):
        with open(BLOW_UP_FILE) as handle:
            raise BlowUp(json.load(handle)['error'])
    if lost:
        k, code = lost[0]
        raise ClientLost(f'socket client {k} of {num_clients} exited with code {code} while i-PI ran: '
                         f'{_tail(f"client_{k}.log")}')
    with open(IPI_LOG) as handle:
        log = handle.read()
    if returncode != 0 or 'I-PI reports success' not in log:
        raise RuntimeError(f'i-PI failed (return code {returncode}); see {IPI_LOG}')
    report['num_clients'] = num_clients
    report['exchange'] = exchange_statistics(log, len(temperatures)) if parameters.get('exchange', True) else None

    per_temperature = [[] for _ in temperatures]
    for system in range(len(temperatures)):
        columns = np.atleast_2d(np.loadtxt(f'R{system}_{PREFIX}.out'))
        positions = read(f'R{system}_{PREFIX}.pos_0.extxyz', index=':')
        forces = read(f'R{system}_{PREFIX}.frc_0.extxyz', index=':')
        for row, atoms, force_frame in zip(columns, positions, forces):
            step, time_ps, kinetic_t, energy, ensemble_t, _ = row
            rung = int(np.argmin(np.abs(np.array(temperatures) - ensemble_t)))
            frame = atoms.copy()
            frame.info = {'step': int(step), 'time_ps': float(time_ps), 'temperature': float(kinetic_t),
                          'target_temperature': float(ensemble_t), 'potential_energy': float(energy), 'system': system}
            frame.arrays['md_forces'] = force_frame.get_forces().copy()  # i-PI's `ase` format: eV/Å
            per_temperature[rung].append(frame)
    for frames in per_temperature:
        frames.sort(key=lambda f: f.info['step'])
    return per_temperature


def client(address: str) -> int:
    """ASE socket client evaluating the job's potential for i-PI."""
    from ase.calculators.socketio import SocketClient
    from ase.io import read

    from aiida_ferromlip.engines.potentials import SPEC_FILE, calculator_from_spec

    from ase.calculators.socketio import SocketClosed

    with open(PARAMETERS_FILE) as handle:
        parameters = json.load(handle)
    atoms = read(STRUCTURE_FILE)
    atoms.calc = guarded(calculator_from_spec(SPEC_FILE), parameters.get('stop_below_distance'))
    # the stress only where a barostat needs it: for a GAP it triples the cost of a call (0.066 -> 0.211 s for 40
    # atoms, docs/throughput.md), and NVT frames keep positions and forces only
    use_stress = parameters.get('ensemble', 'nvt') != 'nvt'
    try:
        SocketClient(unixsocket=address).run(atoms, use_stress=use_stress)
    except BlowUp as exception:  # leave the reason where run_remd finds it; the non-zero exit ends the job
        with open(BLOW_UP_FILE, 'w') as handle:
            json.dump({'error': str(exception)}, handle)
        raise
    except SocketClosed:
        pass  # i-PI closes the socket when the run is over; any other error (a refused connection, a failing
        # potential) propagates and the non-zero exit ends the job (run_remd watches the clients)
    return 0


def closest_pair(atoms, limit: float) -> float | None:
    """The shortest interatomic distance (periodic images included) when it is below ``limit``, else None."""
    from ase.neighborlist import neighbor_list

    distances = neighbor_list('d', atoms, limit)
    return float(distances.min()) if len(distances) else None


def guarded(calculator, limit: float | None):
    """``calculator``, raising :class:`BlowUp` before it evaluates a structure with two atoms closer than
    ``limit`` (Å); ``calculator`` itself when ``limit`` is None."""
    if not limit:
        return calculator
    from ase.calculators.calculator import Calculator, all_changes

    class Guarded(Calculator):
        implemented_properties = list(calculator.implemented_properties)

        def calculate(self, atoms=None, properties=('energy',), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            closest = closest_pair(self.atoms, limit)
            if closest is not None:
                raise BlowUp(f'two atoms {closest:.2f} Å apart (stop_below_distance {limit} Å)')
            probe = self.atoms.copy()
            probe.calc = calculator
            self.results = {name: probe.calc.get_property(name, probe) for name in properties
                            if name in self.implemented_properties}

    return Guarded()


class BlowUp(RuntimeError):
    """The MD reached a structure with two atoms closer than ``stop_below_distance``."""


class ClientLost(RuntimeError):
    """An i-PI socket client died while i-PI ran."""


class MissingStress(RuntimeError):
    """The potential gave no stress where the run needs it."""


def _tail(path: str, lines: int = 5) -> str:
    try:
        with open(path) as handle:
            text = handle.read().strip().splitlines()
    except OSError:
        return f'({path} not written)'
    return ' | '.join(text[-lines:]) or f'({path} is empty)'


# ------------------------------------------------------------------------------------------------ ramp
def run_ramp(parameters: dict, report: dict) -> list[list]:
    """Langevin MD with a target temperature rising linearly from ``t_start`` to ``t_end`` (minimalist paper)."""
    from ase import units
    from ase.io import read
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    from aiida_ferromlip.engines.potentials import SPEC_FILE, calculator_from_spec

    atoms = read(STRUCTURE_FILE)
    atoms.calc = guarded(calculator_from_spec(SPEC_FILE), parameters.get('stop_below_distance'))
    steps, stride = int(parameters['steps']), int(parameters.get('stride', 10))
    t_start, t_end = float(parameters.get('t_start', 10.0)), float(parameters.get('t_end', 300.0))
    rng = np.random.default_rng(int(parameters.get('seed', 0)))
    MaxwellBoltzmannDistribution(atoms, temperature_K=t_start, rng=rng)
    Stationary(atoms)
    friction = 1.0 / (float(parameters.get('thermostat_tau_fs', 100)) * units.fs)
    dynamics = Langevin(atoms, float(parameters.get('timestep_fs', 2.0)) * units.fs, temperature_K=t_start,
                        friction=friction, rng=rng)
    frames = []

    def record():
        step = dynamics.nsteps
        frame = atoms.copy()
        frame.calc = None
        target = t_start + (t_end - t_start) * step / max(steps, 1)
        frame.info = {'step': int(step), 'time_ps': step * float(parameters.get('timestep_fs', 2.0)) / 1000,
                      'temperature': float(atoms.get_temperature()), 'target_temperature': target,
                      'potential_energy': float(atoms.get_potential_energy())}
        frame.arrays['md_forces'] = atoms.get_forces().copy()
        try:
            frame.info['md_stress'] = atoms.get_stress(voigt=True)
        except Exception as exception:  # every frame of a trajectory carries its stress, or the job says why not
            raise MissingStress(f'the potential gave no stress at step {step}: {type(exception).__name__}: '
                                f'{exception}') from exception
        frames.append(frame)

    def ramp():
        dynamics.set_temperature(temperature_K=t_start + (t_end - t_start) * dynamics.nsteps / max(steps, 1))

    dynamics.attach(ramp, interval=1)
    dynamics.attach(record, interval=stride)
    dynamics.run(steps)
    report['ramp'] = {'t_start': t_start, 't_end': t_end}
    return [frames]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='ferromlip-md', description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command')
    sub.add_parser('run')
    client_parser = sub.add_parser('client')
    client_parser.add_argument('--address', required=True)
    args = parser.parse_args(argv)
    if args.command == 'client':
        return client(args.address)

    from ase.io import write

    with open(PARAMETERS_FILE) as handle:
        parameters = json.load(handle)
    report: dict = {'mode': parameters['mode'], 'started_at': process_started_at()}
    start = time.perf_counter()
    try:
        trajectories = (run_remd if parameters['mode'] == 'remd' else run_ramp)(parameters, report)
    except Exception as exception:  # leave a report the parser can explain
        report['error'] = f'{type(exception).__name__}: {exception}'
        report['error_kind'] = {ClientLost: 'client_lost', MissingStress: 'missing_stress',
                                BlowUp: 'blow_up'}.get(type(exception), 'md_failed')
        with open(REPORT_FILE, 'w') as handle:
            json.dump(report, handle, indent=1)
        raise
    report['wall_time_s'] = time.perf_counter() - start
    report['finished_at'] = time.time()
    report['frames_per_trajectory'] = [len(frames) for frames in trajectories]
    for index, frames in enumerate(trajectories):
        write(f'trajectory_{index}.extxyz', frames, format='extxyz')
    with open(REPORT_FILE, 'w') as handle:
        json.dump(report, handle, indent=1)
    print(f'{parameters["mode"]}: {sum(report["frames_per_trajectory"])} frames in {report["wall_time_s"]:.0f} s')
    return 0


def cli() -> None:
    """The console script: ``main``, then an immediate exit (``engines.exit_now``)."""
    exit_now(main)


if __name__ == '__main__':
    cli()
