"""``SwitchingPathWorkChain``: the minimum-energy path between two ferroelectric variants (minimalist paper, Fig. 5).

The potential relaxes both end points (positions, fixed cell), then a climbing-image nudged elastic band (ASE's
``NEB``, images started by IDPP interpolation, FIRE) finds the path — one ``AtomsTaskCalculation`` (task ``neb``)
on the computer. Per image: energy (meV/f.u. relative to the
lower end point), polarization (local dipoles of ``materials.order_parameters``; Born charges of BaTiO3 for Ba/Ti
perovskites, formal charges otherwise, stated in the output) and the antiphase rotation amplitudes R_x, R_y, R_z.
The reference engine then labels the potential's images: its energies along the same path show whether the
potential's barrier is the reference's. (This is the reference on the potential's path, not a reference NEB: a
DFT NEB is a different, much more expensive calculation; a pw.x NEB through aiida-quantumespresso is not wired.)
"""

from __future__ import annotations

import io

import numpy as np
from aiida import orm
from aiida.engine import WorkChain, calcfunction

from aiida_ferromlip.analysis.plots import figure_png
from aiida_ferromlip.data.training_set import TrainingSet, formula_units
from aiida_ferromlip.engines.atoms_task import neb_ends_problem, task_settings
from aiida_ferromlip.exit_codes import declare
from aiida_ferromlip.materials import order_parameters
from aiida_ferromlip.workflows.benchmarks.common import ReferenceMixin, default_inputs, merged_settings

PROTOCOL = 'switching'  # protocols/switching.yaml: the work chain's protocols and these defaults
DEFAULTS = default_inputs(PROTOCOL)['parameters']


def switching_parameters(parameters: orm.Dict | None) -> dict:
    merged = merged_settings(parameters, DEFAULTS, 'switching path')
    task_settings({'task': 'neb', **merged})  # the job's own checks, before any job
    return merged


def validate_inputs(inputs, _):
    if 'potential' not in inputs or 'initial' not in inputs or 'final' not in inputs:
        return None
    try:
        switching_parameters(inputs.get('parameters'))
    except ValueError as exception:
        return str(exception)
    initial = inputs['initial'].get_ase()
    problem = neb_ends_problem({'initial': initial, 'final': inputs['final'].get_ase()})
    if problem:
        return problem
    missing = sorted(set(initial.get_chemical_symbols()) - set(inputs['potential'].species))
    if missing:
        return f'the end points have {", ".join(missing)}, which the potential does not know'
    try:
        order_parameters.perovskite_sites(initial)
    except ValueError as exception:
        return f'{exception}: the polarization and rotations of the path are defined for perovskites'
    return None


def _observables(images, charges: dict) -> dict:
    return {'polarization_C_per_m2': np.array([order_parameters.polarization(a, charges) for a in images]),
            'rotation_R_deg': np.array([order_parameters.tilt_amplitudes(a)['R'] for a in images], dtype=float)}


@calcfunction
def switching_profile(images: TrainingSet, results: orm.Dict) -> dict:
    """The band's images (an ``AtomsTaskCalculation``'s ``neb`` labels) as a path, their energy, polarization and
    rotation profile, and the band's summary."""
    frames = images.frames_by_key()
    path_frames = [frames[key] for key in sorted(frames)]
    energies = np.array([atoms.get_potential_energy() for atoms in path_frames])
    per_fu = 1000 * (energies - energies[[0, -1]].min()) / formula_units(path_frames[0])
    profile = orm.ArrayData()
    profile.set_array('energy_meV_per_fu', per_fu)
    charges, which = order_parameters.default_charges(path_frames[0])
    for name, values in _observables(path_frames, charges).items():
        profile.set_array(name, values)
    for atoms in path_frames:
        atoms.calc = None
    path = orm.TrajectoryData([orm.StructureData(ase=atoms) for atoms in path_frames])
    band = results['summary']
    summary = {'barrier_meV_per_fu': float(per_fu.max()), 'converged': band['converged'], 'neb_steps': band['steps'],
               'endpoints_converged': bool(band['initial_converged'] and band['final_converged']),
               'charges': which, 'images': len(path_frames)}
    return {'path': path, 'profile': profile, 'summary': orm.Dict(summary)}


@calcfunction
def switching_comparison(profile: orm.ArrayData, summary: orm.Dict, reference: TrainingSet) -> dict:
    """The reference's energies on the potential's images, the two barriers, and the three-panel figure."""
    order = np.argsort([int(o['frame_key'].split('_')[-1]) for o in reference.origins])
    frames = [reference.get_frame(int(i)) for i in order]
    energies = np.array([frame.get_potential_energy() for frame in frames])
    reference_per_fu = 1000 * (energies - energies[[0, -1]].min()) / formula_units(frames[0])
    potential_per_fu = profile.get_array('energy_meV_per_fu')
    result = dict(summary.get_dict())
    complete = len(reference_per_fu) == len(potential_per_fu)
    result.update({'reference_barrier_meV_per_fu': float(reference_per_fu.max()), 'reference_complete': complete})
    if complete:
        result['barrier_deviation_meV_per_fu'] = result['barrier_meV_per_fu'] - result['reference_barrier_meV_per_fu']
        result['path_energy_rmse_meV_per_fu'] = float(np.sqrt(np.mean((potential_per_fu - reference_per_fu) ** 2)))
    png = _figure(potential_per_fu, reference_per_fu if complete else None, profile, result['charges'])
    return {'summary': orm.Dict(result),
            'plot': orm.SinglefileData(io.BytesIO(png), filename='switching_path.png')}


def _figure(potential, reference, profile, charges) -> bytes:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    images = np.arange(len(potential))
    polarization = profile.get_array('polarization_C_per_m2')
    rotations = profile.get_array('rotation_R_deg')
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    axes[0].plot(polarization[:, 2], potential, 'o-', color='tab:red', label='potential')
    if reference is not None:
        axes[0].plot(polarization[:, 2], reference, 's--', color='0.3', label='reference on the same images')
    axes[0].set_xlabel('P$_z$ (C/m$^2$)')
    axes[0].set_ylabel('E - E$_{GS}$ (meV/f.u.)')
    axes[0].legend(fontsize=8)
    for index, name in enumerate('xyz'):
        axes[1].plot(images, polarization[:, index], 'o-', label=f'P$_{name}$')
        axes[2].plot(images, rotations[:, index], 'o-', label=f'R$_{name}$')
    axes[1].set_ylabel(f'P (C/m$^2$, {charges.split(" (")[0]})', fontsize=8)
    axes[2].set_ylabel('antiphase rotation R (deg)')
    for axis in axes[1:]:
        axis.set_xlabel('image')
        axis.axhline(0, color='0.6', lw=0.5)
        axis.legend(fontsize=8)
    return figure_png(figure, dpi=100)


class SwitchingPathWorkChain(ReferenceMixin, WorkChain):
    """Climbing-image NEB between two ferroelectric variants with a potential; the reference on its images."""

    _PROTOCOL_FILE = f'{PROTOCOL}.yaml'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        cls.define_benchmark(spec)
        spec.input('initial', valid_type=orm.StructureData, help='First variant (e.g. materials.switching_endpoints).')
        spec.input('final', valid_type=orm.StructureData, help='Second variant: same atoms, same order, same cell.')
        spec.inputs.validator = validate_inputs
        spec.outline(cls.band, cls.profile, cls.label, cls.compare)
        spec.output('path', valid_type=orm.TrajectoryData, help='The images of the converged band.')
        spec.output('profile', valid_type=orm.ArrayData, help='Energy, polarization and R per image.')
        spec.output('summary', valid_type=orm.Dict, help='Barriers (potential, reference), NEB convergence.')
        spec.output('plot', valid_type=orm.SinglefileData, help='Energy vs P_z, P and R per image (PNG).')
        declare(spec, 'ERROR_REFERENCE_FAILED')

    def band(self):
        settings = switching_parameters(self.inputs.get('parameters'))
        return self.submit_task({'initial': self.inputs.initial, 'final': self.inputs.final},
                                {'task': 'neb', **settings}, 'band')

    def profile(self):
        failed = self.task_failed()
        if failed:
            return failed
        self.ctx.neb = switching_profile(self.ctx.task.outputs.labels, self.ctx.task.outputs.results)
        summary = self.ctx.neb['summary'].get_dict()
        self.report(f'NEB with the potential: barrier {summary["barrier_meV_per_fu"]:.1f} meV/f.u. over '
                    f'{summary["images"]} images, {"converged" if summary["converged"] else "NOT converged"} in '
                    f'{summary["neb_steps"]} steps')
        return None

    def label(self):
        images = self.ctx.neb['path']
        return self.submit_reference({f'image_{i:03d}': images.get_step_structure(i) for i in range(images.numsteps)})

    def compare(self):
        node = self.ctx.reference
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_REFERENCE_FAILED.format(detail=node.exit_message)
        results = switching_comparison(self.ctx.neb['profile'], self.ctx.neb['summary'], node.outputs.training_set)
        self.out('path', self.ctx.neb['path'])
        self.out('profile', self.ctx.neb['profile'])
        self.out('summary', results['summary'])
        self.out('plot', results['plot'])
        summary = results['summary'].get_dict()
        self.report(f'reference on the same images: barrier {summary["reference_barrier_meV_per_fu"]:.1f} meV/f.u.')
        return None
