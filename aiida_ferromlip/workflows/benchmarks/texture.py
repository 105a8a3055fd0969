"""``VortexTextureWorkChain``: does a polar vortex-antivortex texture survive relaxation with the potential, and
what does it cost against the homogeneous in-plane state (minimalist paper, Fig. 4; DFT there: 9 meV/f.u.)?

Both structures (e.g. ``materials.dipole_texture(kind='vortex' | 'homogeneous')``) are relaxed with the potential
(positions, and the cell when ``relax_cell``; no symmetry constraint, so the texture may unwind; FIRE) in one
``AtomsTaskCalculation`` on the computer. Reported: the
energy of the texture above the homogeneous state in meV/f.u., the winding numbers of the local-dipole field
before and after (vortex +1, antivortex -1 per plaquette, ``materials.order_parameters.winding_numbers``), whether
the texture survives (the same vortices and antivortices after relaxation, and dipoles that did not vanish), and
maps of the local dipoles (in-plane arrows, out-of-plane colour) as PNG.

The reference engine then labels the two relaxed cells: its texture - homogeneous energy on the same cells says
whether the potential's cost of the texture is the reference's, and its largest force on each cell whether the
potential's relaxed texture is near a stationary state of the reference too. (The reference on the potential's
cells, not a reference relaxation, as for the switching path: an 80-atom DFT relaxation is a different cost.)
"""

from __future__ import annotations

import io

import numpy as np
from aiida import orm
from aiida.engine import WorkChain, calcfunction

from aiida_ferromlip.analysis.plots import figure_png
from aiida_ferromlip.data.training_set import TrainingSet, formula_units
from aiida_ferromlip.exit_codes import declare
from aiida_ferromlip.materials import order_parameters
from aiida_ferromlip.protocols import default_inputs, merged_settings
from aiida_ferromlip.workflows.benchmarks.common import ReferenceMixin

PROTOCOL = 'texture'  # protocols/texture.yaml: the work chain's protocols and these defaults
DEFAULTS = default_inputs(PROTOCOL)['parameters']


def texture_parameters(parameters: orm.Dict | None) -> dict:
    return merged_settings(parameters, DEFAULTS, 'texture')


def validate_inputs(inputs, _):
    if 'potential' not in inputs or 'texture' not in inputs or 'homogeneous' not in inputs:
        return None
    try:
        texture_parameters(inputs.get('parameters'))
    except ValueError as exception:
        return str(exception)
    texture, homogeneous = inputs['texture'].get_ase(), inputs['homogeneous'].get_ase()
    if texture.get_chemical_formula() != homogeneous.get_chemical_formula():
        return 'the texture and the homogeneous state must have the same composition'
    missing = sorted(set(texture.get_chemical_symbols()) - set(inputs['potential'].species))
    if missing:
        return f'the structures have {", ".join(missing)}, which the potential does not know'
    try:
        grid, dipoles = order_parameters.dipole_map(texture)
        if not np.abs(order_parameters.winding_numbers(grid, dipoles)).any():
            return 'the `texture` structure carries no vortex or antivortex in its local dipoles'
    except ValueError as exception:
        return f'texture: {exception}'
    return None


def relaxation_task(parameters: orm.Dict | None) -> dict:
    """The task job's settings for the two relaxations."""
    settings = texture_parameters(parameters)
    return {'task': 'relax', 'fmax': settings['fmax'], 'max_steps': settings['max_steps'],
            'relax_cell': settings['relax_cell'], 'keep_symmetry': False, 'optimizer': 'FIRE'}


@calcfunction
def compare_textures(texture: orm.StructureData, homogeneous: orm.StructureData, relaxed: TrainingSet,
                     results: orm.Dict, parameters: orm.Dict) -> dict:
    """Energies, winding numbers before/after and dipole maps of the two states as the potential relaxed them
    (``relaxed``, ``results``: the ``AtomsTaskCalculation``'s outputs); the relaxed cells, for the reference."""
    settings = texture_parameters(parameters)
    charges, _ = order_parameters.default_charges(texture.get_ase())
    frames, rows = relaxed.frames_by_key(), results['rows']
    missing = sorted({'texture', 'homogeneous'} - set(frames))
    if missing:
        raise ValueError(f'the relaxation of {" and ".join(missing)} failed: '
                         f'{ {key: results["failures"].get(key) for key in missing} }')
    states, maps, summary = {}, orm.ArrayData(), {}
    for name, structure in (('texture', texture), ('homogeneous', homogeneous)):
        start, final = structure.get_ase(), frames[name]
        grid, before = order_parameters.dipole_map(start, charges)
        _, after = order_parameters.dipole_map(final, charges)
        maps.set_array(f'{name}_grid', grid)
        maps.set_array(f'{name}_dipoles_initial', before)
        maps.set_array(f'{name}_dipoles_relaxed', after)
        winding = {'initial': order_parameters.winding_numbers(grid, before),
                   'relaxed': order_parameters.winding_numbers(grid, after)}
        maps.set_array(f'{name}_winding_relaxed', winding['relaxed'])
        strength = float(np.linalg.norm(after[:, :2], axis=1).mean() / np.linalg.norm(before[:, :2], axis=1).mean())
        summary[name] = {'energy_per_fu_eV': float(final.get_potential_energy() / formula_units(final)),
                         'converged': rows[name]['converged'], 'steps': rows[name]['steps'],
                         'vortices': int((winding['relaxed'] == 1).sum()),
                         'antivortices': int((winding['relaxed'] == -1).sum()),
                         'same_windings': bool(np.array_equal(winding['initial'], winding['relaxed'])),
                         'in_plane_dipole_ratio': strength}
        final.calc = None
        states[name] = orm.StructureData(ase=final)
    texture_row = summary['texture']
    summary['energy_difference_meV_per_fu'] = 1000 * (texture_row['energy_per_fu_eV']
                                                      - summary['homogeneous']['energy_per_fu_eV'])
    summary['texture_survives'] = bool(texture_row['same_windings']
                                       and texture_row['in_plane_dipole_ratio'] > settings['min_dipole_fraction'])
    return {'summary': orm.Dict(summary), 'dipole_maps': maps, 'relaxed_texture': states['texture'],
            'relaxed_homogeneous': states['homogeneous']}


@calcfunction
def texture_comparison(summary: orm.Dict, maps: orm.ArrayData, reference: TrainingSet) -> dict:
    """The reference's energies and largest forces on the potential's relaxed cells (``reference``: their labels,
    keyed ``texture``/``homogeneous``), its texture - homogeneous energy beside the potential's, and the maps' PNG."""
    result = dict(summary.get_dict())
    frames = reference.frames_by_key()
    for name in ('texture', 'homogeneous'):
        if name in frames:
            frame = frames[name]
            result[name]['reference_energy_per_fu_eV'] = float(frame.get_potential_energy() / formula_units(frame))
            result[name]['reference_max_force_eV_per_A'] = float(np.linalg.norm(frame.get_forces(), axis=1).max())
    result['reference_complete'] = len(frames.keys() & {'texture', 'homogeneous'}) == 2
    if result['reference_complete']:
        result['reference_energy_difference_meV_per_fu'] = 1000 * (
            result['texture']['reference_energy_per_fu_eV'] - result['homogeneous']['reference_energy_per_fu_eV'])
        result['energy_difference_deviation_meV_per_fu'] = (result['energy_difference_meV_per_fu']
                                                            - result['reference_energy_difference_meV_per_fu'])
    png = _maps_figure(maps, result)
    return {'summary': orm.Dict(result), 'plot': orm.SinglefileData(io.BytesIO(png), filename='vortex_texture.png')}


def _maps_figure(maps: orm.ArrayData, summary: dict) -> bytes:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(12.5, 4))
    panels = (('texture', 'initial', 'texture, start'), ('texture', 'relaxed', 'texture, relaxed'),
              ('homogeneous', 'relaxed', 'homogeneous, relaxed'))
    every = np.concatenate([maps.get_array(f'{name}_dipoles_{stage}') for name, stage, _ in panels])
    # one symmetric colour scale for p_z in all panels, never narrower than a tenth of the in-plane dipoles (so
    # numerical noise around p_z = 0 stays white)
    limit = max(np.abs(every[:, 2]).max(), 0.1 * np.linalg.norm(every[:, :2], axis=1).max(), 1e-6)
    for axis, (name, stage, title) in zip(axes, panels):
        grid = maps.get_array(f'{name}_grid')
        dipoles = maps.get_array(f'{name}_dipoles_{stage}')
        arrows = axis.quiver(grid[:, 0], grid[:, 1], dipoles[:, 0], dipoles[:, 1], dipoles[:, 2], cmap='coolwarm',
                             pivot='middle', clim=(-limit, limit), edgecolor='k', linewidth=0.5)
        axis.set_aspect('equal')
        axis.set_title(title, fontsize=9)
        axis.set_xlabel('cell i')
        axis.set_ylabel('cell j')
    figure.colorbar(arrows, ax=axes[-1], label='p$_z$ (e·Å)', shrink=0.8)
    survives = 'survives' if summary['texture_survives'] else 'does not survive'
    reference = summary.get('reference_energy_difference_meV_per_fu')
    figure.suptitle(f'texture {survives}; E(texture) - E(homogeneous) = '
                    f'{summary["energy_difference_meV_per_fu"]:.1f} meV/f.u.'
                    + (f' (reference on the same cells: {reference:.1f})' if reference is not None else ''))
    return figure_png(figure, dpi=100)


class VortexTextureWorkChain(ReferenceMixin, WorkChain):
    """Relax a polar vortex-antivortex texture and the homogeneous state with a potential; compare them, and the
    reference's energies on the same relaxed cells.

    Builder: ``get_builder_from_protocol(reference_code, task_code, potential, protocol=None, overrides=None,
    texture=..., homogeneous=...)`` (``ReferenceMixin``'s)."""

    _PROTOCOL_FILE = f'{PROTOCOL}.yaml'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        cls.define_benchmark(spec)
        spec.input('texture', valid_type=orm.StructureData, help='A structure carrying vortices/antivortices.')
        spec.input('homogeneous', valid_type=orm.StructureData, help='The competing homogeneous state.')
        spec.inputs.validator = validate_inputs
        spec.outline(cls.relax, cls.compare, cls.label, cls.judge)
        spec.output('summary', valid_type=orm.Dict, help='Energies (potential, reference), winding numbers, survival, '
                                                          'convergence.')
        spec.output('dipole_maps', valid_type=orm.ArrayData, help='Local dipoles per column, before and after.')
        spec.output('relaxed_texture', valid_type=orm.StructureData)
        spec.output('relaxed_homogeneous', valid_type=orm.StructureData)
        spec.output('plot', valid_type=orm.SinglefileData, help='Dipole maps (PNG).')
        declare(spec, 'ERROR_REFERENCE_FAILED')

    def relax(self):
        structures = {'texture': self.inputs.texture, 'homogeneous': self.inputs.homogeneous}
        return self.submit_task(structures, relaxation_task(self.inputs.get('parameters')), 'relax')

    def compare(self):
        failed = self.task_failed()
        if failed:
            return failed
        results = compare_textures(self.inputs.texture, self.inputs.homogeneous, self.ctx.task.outputs.labels,
                                   self.ctx.task.outputs.results, self.inputs.get('parameters', orm.Dict(DEFAULTS)))
        # the potential's side is kept whatever the reference does
        for key in ('dipole_maps', 'relaxed_texture', 'relaxed_homogeneous'):
            self.out(key, results[key])
        self.ctx.potential_side = results
        summary = results['summary'].get_dict()
        self.report(f'texture {"survives" if summary["texture_survives"] else "does not survive"} '
                    f'({summary["texture"]["vortices"]} vortices, {summary["texture"]["antivortices"]} antivortices '
                    f'after relaxation); E(texture) - E(homogeneous) = '
                    f'{summary["energy_difference_meV_per_fu"]:.2f} meV/f.u.')
        for name in ('texture', 'homogeneous'):
            if not summary[name]['converged']:
                self.report(f'the {name} relaxation did not converge in {summary[name]["steps"]} steps')
        return None

    def label(self):
        results = self.ctx.potential_side
        return self.submit_reference({'texture': results['relaxed_texture'],
                                      'homogeneous': results['relaxed_homogeneous']})

    def judge(self):
        node = self.ctx.reference
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_REFERENCE_FAILED.format(detail=node.exit_message)
        results = texture_comparison(self.ctx.potential_side['summary'], self.ctx.potential_side['dipole_maps'],
                                     node.outputs.training_set)
        self.out('summary', results['summary'])
        self.out('plot', results['plot'])
        summary = results['summary'].get_dict()
        if not summary['reference_complete']:
            self.report('the reference left a relaxed cell unlabelled: no reference energy difference')
            return None
        self.report(f'reference on the same cells: E(texture) - E(homogeneous) = '
                    f'{summary["reference_energy_difference_meV_per_fu"]:.2f} meV/f.u. (potential '
                    f'{summary["energy_difference_deviation_meV_per_fu"]:+.2f}); largest reference force on the '
                    f'relaxed texture {summary["texture"]["reference_max_force_eV_per_A"]:.3f} eV/Å')
        return None
