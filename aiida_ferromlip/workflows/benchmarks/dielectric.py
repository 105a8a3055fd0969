"""``DielectricResponseWorkChain``: static and frequency-dependent dielectric response from MD with a potential and a
polarization model (BaTiO3-GAP paper, Sec. 2.5, eqs. 4-6).

MD at each temperature of a list (``SampleCalculation``; NVT or NpT, independent runs by default) of a supercell;
the model's cell dipole for every frame after the equilibration part (a temperature where the MD collapsed the crystal
— atoms closer than any bond — is reported and left out, not turned into a number); per temperature the static dielectric tensor
from the dipole fluctuations (``analysis.dielectric``), its isotropic part and principal values; a Curie-Weiss fit
of the isotropic constant over the temperatures at or above ``curie_weiss_from_K`` (the cubic branch: choose it
above the transition); the susceptibility spectrum at ``spectrum_temperature_K`` from the dipole autocorrelation.
The supercell size is part of the summary, since these fluctuations converge slowly with it (the BaTiO3-GAP paper compares
4x4x4 and 5x5x5).
"""

from __future__ import annotations

import io
import pathlib

import numpy as np
from aiida import orm
from aiida.engine import WorkChain, calcfunction

from aiida_ferromlip.analysis import dielectric
from aiida_ferromlip.analysis.plots import figure_png
from aiida_ferromlip.calculations.base import PROTOCOLS, ProtocolMixin
from aiida_ferromlip.data.polarization import PolarizationModel
from aiida_ferromlip.protocols import default_inputs
from aiida_ferromlip.validation import DEFAULT_MIN_DISTANCE, min_interatomic_distance
from aiida_ferromlip.workflows.benchmarks.common import MolecularDynamicsMixin, merged_settings
from aiida_ferromlip.data.training_set import trajectory_frames

#: The analysis defaults: `default_inputs.analysis` of protocols/dielectric.yaml (the one place they live).
ANALYSIS_DEFAULTS = default_inputs('dielectric')['analysis']


def analysis_parameters(parameters: orm.Dict | None) -> dict:
    settings = merged_settings(parameters, ANALYSIS_DEFAULTS, 'dielectric analysis')
    if not 0 <= settings['equilibration_fraction'] < 1:
        raise ValueError('`equilibration_fraction` must be in [0, 1)')
    if not 0 < settings['max_lag_fraction'] <= 0.5:
        raise ValueError('`max_lag_fraction` must be in (0, 0.5]: the autocorrelation needs lags averaged many times')
    return settings


@calcfunction
def dielectric_response(polarization_model: PolarizationModel, analysis: orm.Dict,
                        **trajectories: orm.TrajectoryData) -> dict:
    """Static dielectric tensor per temperature, Curie-Weiss fit, susceptibility spectrum, and their plot."""
    settings = analysis_parameters(analysis)
    model = polarization_model.model()
    rows, arrays, series = [], orm.ArrayData(), {}
    for trajectory in sorted(trajectories.values(), key=lambda t: float(np.mean(t.get_array('target_temperatures')))):
        temperature = float(np.mean(trajectory.get_array('target_temperatures')))
        frames = trajectory_frames(trajectory, settings['equilibration_fraction'])
        key = f'T_{int(round(temperature)):04d}K'
        # atoms closer than any physical bond: the potential collapsed the crystal; its dipoles mean nothing
        broken = sum(min_interatomic_distance(atoms) < DEFAULT_MIN_DISTANCE for atoms in frames)
        if broken:
            rows.append({'key': key, 'temperature_K': temperature, 'frames': len(frames), 'broken_frames': int(broken)})
            continue
        dipoles = np.array([model.predict(atoms)[0] for atoms in frames])
        volume = float(np.mean([atoms.get_volume() for atoms in frames]))
        tensor = dielectric.static_dielectric_tensor(dipoles, volume, temperature, settings['eps_inf'])
        arrays.set_array(f'{key}_dipoles', dipoles)
        series[temperature] = (dipoles, trajectory)
        rows.append({'key': key, 'temperature_K': temperature, 'frames': len(frames), 'volume_A3': volume,
                     'eps_isotropic': float(np.trace(tensor) / 3), 'eps_principal': np.linalg.eigvalsh(tensor).tolist(),
                     'eps_tensor': tensor.tolist(), 'mean_dipole_e_A': dipoles.mean(axis=0).tolist()})
    if not series:
        raise ValueError('the MD collapsed the crystal at every temperature: no dielectric constant to compute')
    summary = {'temperatures': rows, 'atoms': len(frames[0]), 'analysis': settings,
               'dipoles_from': f'PolarizationModel<{polarization_model.pk}>',
               'broken_at_K': [row['temperature_K'] for row in rows if 'broken_frames' in row]}
    intact = [row for row in rows if 'broken_frames' not in row]
    start = settings['curie_weiss_from_K']
    branch = [row for row in intact if start is not None and row['temperature_K'] >= start]
    if len(branch) >= 4:
        try:
            summary['curie_weiss'] = dielectric.curie_weiss_fit([r['temperature_K'] for r in branch],
                                                                [r['eps_isotropic'] for r in branch])
        except (ValueError, RuntimeError) as exception:
            summary['curie_weiss_failed'] = str(exception)
    elif start is not None:
        summary['curie_weiss_failed'] = f'{len(branch)} temperatures at or above {start} K; the fit needs 4'
    spectrum_t = settings['spectrum_temperature_K'] or max(series)
    nearest = min(series, key=lambda t: abs(t - spectrum_t))
    dipoles, trajectory = series[nearest]
    steps = np.diff(trajectory.get_stepids()).mean() if len(trajectory.get_stepids()) > 1 else 1
    timestep_fs = float(np.diff(trajectory.get_times()).mean() * 1000) if len(dipoles) > 1 else 1.0
    eps = next(row['eps_isotropic'] for row in rows if row['temperature_K'] == nearest)
    frequencies, chi = dielectric.susceptibility_spectrum(dipoles, timestep_fs, eps,
                                                          max(1, int(settings['max_lag_fraction'] * len(dipoles))))
    arrays.set_array('spectrum_frequency_thz', frequencies)
    arrays.set_array('spectrum_chi', np.stack([chi.real, chi.imag], axis=1))
    summary['spectrum'] = {'temperature_K': nearest, 'frame_spacing_fs': timestep_fs, 'md_steps_per_frame': float(steps)}
    png = _figure(summary, frequencies, chi)
    return {'summary': orm.Dict(summary), 'arrays': arrays,
            'plot': orm.SinglefileData(io.BytesIO(png), filename='dielectric.png')}


def _figure(summary, frequencies, chi) -> bytes:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rows = [row for row in summary['temperatures'] if 'broken_frames' not in row]
    temperatures = np.array([row['temperature_K'] for row in rows])
    figure, (static, inverse, spectrum) = plt.subplots(1, 3, figsize=(13, 4))
    static.plot(temperatures, [row['eps_isotropic'] for row in rows], 'o-', label='ε (trace/3)')
    principal = np.array([row['eps_principal'] for row in rows])
    for k in range(3):
        static.plot(temperatures, principal[:, k], '.', alpha=0.6, label='principal values' if k == 0 else None)
    inverse.plot(temperatures, [1 / row['eps_isotropic'] for row in rows], 'o', label='1/ε')
    fit = summary.get('curie_weiss')
    if fit:
        grid = np.linspace(max(fit['Tc_K'] + 1, temperatures.min()), temperatures.max(), 200)
        law = fit['C_K'] / (grid - fit['Tc_K']) + fit['eps_T_inf']
        static.plot(grid, law, 'k--', lw=0.8, label=f'Curie–Weiss, Tc = {fit["Tc_K"]:.0f} K')
        inverse.plot(grid, 1 / law, 'k--', lw=0.8)
    static.set_yscale('log')
    for axis in (static, inverse):
        axis.set_xlabel('T (K)')
        axis.legend(fontsize=8)
    static.set_ylabel('static ε')
    inverse.set_ylabel('1/ε')
    spectrum.plot(frequencies, chi.real, label="χ'")
    spectrum.plot(frequencies, -chi.imag, label="χ'' (−Im)")
    spectrum.set_xlabel('frequency (THz)')
    spectrum.set_title(f'{summary["spectrum"]["temperature_K"]:.0f} K', fontsize=9)
    spectrum.legend(fontsize=8)
    broken = (f'; crystal collapsed at {", ".join(f"{t:.0f}" for t in summary["broken_at_K"])} K (left out)'
              if summary['broken_at_K'] else '')
    figure.suptitle(f'{summary["atoms"]}-atom supercell; dipoles from {summary["dipoles_from"]}{broken}', fontsize=10)
    return figure_png(figure, dpi=90)


def validate_inputs(inputs, _):
    if any(port not in inputs for port in ('potential', 'structure', 'sample', 'polarization_model')):
        return None
    try:
        analysis_parameters(inputs.get('analysis'))
    except ValueError as exception:
        return str(exception)
    atoms = inputs['structure'].get_ase()
    problems = DielectricResponseWorkChain.md_problems(inputs)
    missing = sorted(set(atoms.numbers.tolist()) - set(inputs['polarization_model'].base.attributes.get('species')))
    if missing:
        problems.append(f'the polarization model has no environments of atomic number(s) {missing}')
    return '\n'.join(problems) if problems else None


class DielectricResponseWorkChain(MolecularDynamicsMixin, ProtocolMixin, WorkChain):
    """MD per temperature with a potential; dielectric tensor, Curie-Weiss fit and spectrum from a dipole model."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        cls.define_md(spec, 'The supercell (its size is reported).')
        spec.input('polarization_model', valid_type=PolarizationModel, help='Gives each frame its cell dipole.')
        spec.input('analysis', valid_type=orm.Dict, required=False, help=f'Settings: {sorted(ANALYSIS_DEFAULTS)}.')
        spec.inputs.validator = validate_inputs
        spec.outline(cls.run_md, cls.analyse)
        spec.output('summary', valid_type=orm.Dict, help='Per temperature ε tensor; Curie-Weiss fit; spectrum info.')
        spec.output('arrays', valid_type=orm.ArrayData, help='Dipoles per frame and temperature; χ(ω).')
        spec.output('plot', valid_type=orm.SinglefileData)

    @classmethod
    def get_protocol_filepath(cls) -> pathlib.Path:
        return PROTOCOLS / 'dielectric.yaml'

    @classmethod
    def get_builder_from_protocol(cls, code, potential, polarization_model, structure=None, protocol=None,
                                  overrides=None):
        """Builder (protocols fast | batio3_gap); without ``structure`` a cubic BaTiO3 supercell of the protocol's
        ``supercell``."""
        from aiida_ferromlip.materials import perovskite_polymorph

        inputs = cls.get_protocol_inputs(protocol, overrides)
        structure = structure or orm.StructureData(
            ase=perovskite_polymorph('Ba', 'Ti', 'Pm-3m', supercell=tuple(inputs['supercell'])))
        builder = cls.md_builder(code, potential, structure, inputs)
        builder.polarization_model = polarization_model
        return builder

    def analyse(self):
        failed = self.md_failed()
        if failed:
            return failed
        node = self.ctx.md
        results = dielectric_response(self.inputs.polarization_model,
                                      self.inputs.get('analysis', orm.Dict(ANALYSIS_DEFAULTS)),
                                      **dict(node.outputs.trajectories))
        for key, output in results.items():
            self.out(key, output)
        summary = results['summary'].get_dict()
        for row in summary['temperatures']:
            if 'broken_frames' in row:
                self.report(f'{row["temperature_K"]:.0f} K: the crystal collapsed (atoms closer than '
                            f'{DEFAULT_MIN_DISTANCE} Å) in {row["broken_frames"]} of {row["frames"]} frames: left out')
                continue
            self.report(f'{row["temperature_K"]:.0f} K: ε = {row["eps_isotropic"]:.1f} (principal '
                        f'{", ".join(f"{e:.1f}" for e in row["eps_principal"])}) from {row["frames"]} frames')
        if 'curie_weiss' in summary:
            fit = summary['curie_weiss']
            self.report(f'Curie-Weiss: C = {fit["C_K"]:.0f} K, Tc = {fit["Tc_K"]:.1f} ± {fit["Tc_K_error"]:.1f} K')
        return None
