"""``ActiveLearningWorkChain``: label -> fit -> sample -> select, until the model predicts new data well.

Each stage is one of the plugin's processes behind its contract, so the loop never branches on an engine's
name: ``LabelWorkChain`` (any labeller) returns a TrainingSet, ``GapFitCalculation`` or
``NequipTrainCalculation`` (``fit.model``, each in its restart wrapper of ``workflows/restart.py``) a Potential,
``SampleCalculation`` trajectories, ``select_candidates`` structures. Before a new batch joins the TrainingSet,
the current potential's errors on it are recorded: that out-of-sample learning curve is the stop criterion.

With an uncertainty selector (``select_parameters.selector``: ``uncertainty`` or ``fps+uncertainty``) every fit is
a committee: the loop's fit (member 0, the potential MD samples with) plus ``committee.size - 1`` fits with other
seeds (GAP: other validation splits, i.e. other training subsets, and other sparse points; NequIP/Allegro: other
initial weights), held in a ``CommitteePotential``. An ``energies`` task job scores every sampled frame with it, the
trust levels are calibrated on the frames labelled so far, and selection picks inside the trust band. With
``select_parameters.uncertainty: gap_variance`` (GAP only) no committee is fitted: the task job scores the frames
with quippy's own predictive variance of the loop's GAP.
"""

from __future__ import annotations

import io
import pathlib

import numpy as np
from aiida import orm
from aiida.engine import WorkChain, calcfunction, if_, while_

from aiida_ferromlip import materials
from aiida_ferromlip.analysis.plots import figure_png
from aiida_ferromlip.calculations.base import PROTOCOLS, ProtocolMixin
from aiida_ferromlip.calculations.sample import SampleCalculation
from aiida_ferromlip.calculations.atoms_task import AtomsTaskCalculation
from aiida_ferromlip.data.potential import POTENTIAL_TYPES, committee_of
from aiida_ferromlip.data.training_set import TrainingSet, merge_training_sets
from aiida_ferromlip.exit_codes import declare
from aiida_ferromlip.protocols import default_inputs, merged_settings
from aiida_ferromlip.workflows.label.base import LabelWorkChain
from aiida_ferromlip.workflows.label.engines import get_engine
from aiida_ferromlip.workflows.benchmarks.physics_card import PhysicsCardWorkChain, card_frames, paired_frames
from aiida_ferromlip.workflows.fit.models import (
    MODELS, explorer_job_inputs, explorer_problem, explorer_settings, fit_model_name, fit_namespaces, get_model,
)
from aiida_ferromlip.workflows.select.candidates import (
    SCORE_LABELS,
    deviation_error_pairs,
    merged_options,
    needs_committee,
    needs_uncertainty,
    select_candidates,
    trust_levels,
)

#: Materials a user can name instead of giving structures: their known polymorphs (the papers' start points).
MATERIALS = tuple(materials.MATERIALS)

#: Loop control defaults: `default_inputs.parameters` of protocols/active_learning.yaml (the one place they live).
LOOP_DEFAULTS = default_inputs('active_learning')['parameters']




def loop_parameters(parameters: orm.Dict | None) -> dict:
    return merged_settings(parameters, LOOP_DEFAULTS, 'loop')


@calcfunction
def loop_summary(iterations: orm.List, stop_reason: orm.Str, num_labels: orm.Int, training_set: TrainingSet) -> orm.Dict:
    """The loop's record: per iteration what was sampled, selected, labelled and how the potential did, the stop
    reason, the labels spent and the final TrainingSet's size."""
    return orm.Dict({'iterations': iterations.get_list(), 'stop_reason': stop_reason.value,
                     'num_labels': num_labels.value, 'training_frames': len(training_set)})


def start_structures(material: str | None, structures: dict) -> dict[str, orm.StructureData]:
    """The structures MD starts from: the user's, or the named material's polymorphs in the papers' training cells
    (40-atom perovskites, 24-atom HfO2)."""
    if structures:
        return dict(structures)
    if material not in MATERIALS:
        raise ValueError(f'unknown material `{material}`; known: {", ".join(MATERIALS)} (or give `structures`)')
    return {materials.port_name(phase): orm.StructureData(ase=atoms)
            for phase, atoms in materials.polymorphs(material, 'training').items()}


def loop_stages(stages, material: str | None, starts: dict) -> list[list[str]]:
    """The start-structure keys of each stage, in order (see ``LOOP_DEFAULTS['stages']``).

    :raises ValueError: for a stage list that names no start structure, or `minimalist` without a material the paper
        trained."""
    if stages is None:
        return [sorted(starts)]
    if stages == 'minimalist':
        if material not in materials.MINIMALIST_STAGES:
            raise ValueError('`stages: minimalist` follows the minimalist-MLIP paper\'s stages of a named material: '
                             f'give `material` ({", ".join(materials.MINIMALIST_STAGES)}) or list the stages')
        stages = [[materials.port_name(phase)] for phase in materials.MINIMALIST_STAGES[material]]
    if not isinstance(stages, list) or not stages or not all(isinstance(stage, list) and stage for stage in stages):
        raise ValueError(f'`stages` must be null, `minimalist` or a list of non-empty lists of start keys, got {stages}')
    unknown = sorted({key for stage in stages for key in stage} - set(starts))
    if unknown:
        raise ValueError(f'`stages` names {unknown}, which are not start structures ({sorted(starts)})')
    return [list(stage) for stage in stages]


def validate_inputs(inputs, namespace):
    """Fail fast: bad thresholds or budgets, no start structures, unknown material."""
    if 'parameters' not in namespace:
        return None
    if 'initial_potential' in inputs and 'initial_training_set' not in inputs:
        return ('`initial_potential` needs the TrainingSet it continues (`initial_training_set`): the loop adds the '
                'new labels to it and refits')
    try:
        loop = loop_parameters(inputs.get('parameters'))
        merged_options(inputs.get('select_parameters'))
        if needs_uncertainty(inputs.get('select_parameters')):
            options = merged_options(inputs.get('select_parameters'))
            model = fit_model_name(inputs)
            if options['uncertainty'] == 'gap_variance' and model != 'gap':
                return (f"`uncertainty: gap_variance` is quippy's predictive variance of a GAP; the loop fits "
                        f'`{model}`: use `uncertainty: committee`')
            if options['uncertainty'] == 'committee':
                if int(loop['committee']['size']) < 2:
                    return f'a committee needs at least two members, got `committee.size` {loop["committee"]["size"]}'
                if not 0 < float(loop['committee']['validation_fraction']) < 1:
                    return '`committee.validation_fraction` must lie in (0, 1)'
            if 'task_code' not in inputs and 'task_code' not in inputs.get('card', {}):
                return (f'selector `{options["selector"]}` scores candidates with an uncertainty '
                        f'({options["uncertainty"]}) in a task job: give `task_code` (a ferromlip.atoms_task code)')
        material = inputs['material'].value if 'material' in inputs else None
        starts = start_structures(material, inputs.get('structures', {}))
        first_stage = loop_stages(loop['stages'], material, starts)[0]
    except ValueError as exception:
        return str(exception)
    label = inputs.get('label', {})
    engine_name = label['engine'].value if 'engine' in label else 'reference'
    try:
        engine = get_engine(engine_name)
    except ValueError as exception:
        return str(exception)
    problem = engine.validate(label.get(engine_name, {}), starts)  # species the labeller cannot label, overlaps
    if problem:
        return problem
    try:
        model = get_model(fit_model_name(inputs))
    except ValueError as exception:
        return str(exception)
    if 'code' not in model.given_inputs(inputs):
        return f'model `{model.name}` needs the inputs of its fit in the `{model.namespace}` namespace (code, ...)'
    first = (len(inputs['initial_training_set']) if 'initial_training_set' in inputs
             else loop['seed_frames_per_structure'] * len(first_stage))
    problem = model.validate(model.given_inputs(inputs), starts, loop, first) or \
        explorer_problem(model, inputs, starts, loop, first)
    if problem:
        return problem
    if any(value < 0 for value in loop['thresholds'].values()):
        return f'thresholds must be non-negative, got {loop["thresholds"]}'
    if loop['max_iterations'] < 1:
        return '`max_iterations` must be at least 1'
    batch = merged_options(inputs.get('select_parameters'))['num_select']
    seed_labels = 0 if 'initial_training_set' in inputs else loop['seed_frames_per_structure'] * len(first_stage)
    if loop['max_labels'] < seed_labels + batch:
        return (f'`max_labels` ({loop["max_labels"]}) is smaller than the seed labels ({seed_labels}) plus one '
                f'selected batch ({batch})')
    return None


def _batch_metrics(labels: dict, potential) -> orm.Dict:
    from aiida_ferromlip.analysis.errors import error_metrics

    metrics = error_metrics(labels)
    metrics['num_train_frames'] = potential.base.attributes.get('num_train_frames')
    return orm.Dict(metrics)


@calcfunction
def prediction_errors(potential: orm.SinglefileData, reference: TrainingSet) -> orm.Dict:
    """Errors of ``potential`` (any Potential node) on frames it was not trained on (the out-of-sample learning
    curve), the potential evaluated here: for a loop without a task code."""
    from aiida_ferromlip.analysis.errors import predicted_labels

    return _batch_metrics(predicted_labels(reference.to_atoms(), potential.calculator()), potential)


@calcfunction
def batch_errors(potential: orm.SinglefileData, reference: TrainingSet, predicted: TrainingSet) -> orm.Dict:
    """``prediction_errors`` from the potential's predictions made in a task job beside the labelling (``predicted``,
    frames paired with ``reference`` by key): the same metrics, no model evaluated in the daemon."""
    from aiida_ferromlip.analysis.errors import labels_from_pairs

    labelled, predictions = paired_frames(reference, predicted)
    if not labelled:
        raise ValueError('no labelled frame has a prediction with the same key')
    return _batch_metrics(labels_from_pairs(labelled, predictions), potential)


@calcfunction
def learning_curve(thresholds: orm.Dict | None = None, **errors: orm.Dict) -> dict:
    """Out-of-sample errors per iteration as ArrayData and a PNG; with the loop's ``thresholds`` the PNG draws them
    and marks the iterations whose batch was below both (the loop's convergence test)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    keys = sorted(errors)
    data = {
        'iteration': np.arange(len(keys)),
        'num_train_frames': np.array([errors[k].get('num_train_frames') or 0 for k in keys]),
        'energy_per_fu_meV_rmse': np.array([errors[k]['energy_per_fu_meV_rmse'] for k in keys]),
        'forces_meV_per_A_rmse': np.array([errors[k]['forces_meV_per_A_rmse'] for k in keys]),
        'stress_kbar_rmse': np.array([errors[k]['stress_kbar_rmse'] for k in keys]),
    }
    limits = thresholds.get_dict() if thresholds is not None else {}
    below = np.ones(len(keys), dtype=bool) if limits else np.zeros(len(keys), dtype=bool)
    for name, key in (('energy_per_fu_meV_rmse', 'energy_meV_per_fu'), ('forces_meV_per_A_rmse', 'forces_meV_per_A')):
        if key in limits:
            below &= data[name] <= limits[key]
    data['below_thresholds'] = below
    array = orm.ArrayData()
    for name, values in data.items():
        array.set_array(name, values)
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    panels = (('energy_per_fu_meV_rmse', 'energy RMSE (meV/f.u.)', 'energy_meV_per_fu'),
              ('forces_meV_per_A_rmse', 'force RMSE (meV/Å)', 'forces_meV_per_A'),
              ('stress_kbar_rmse', 'stress RMSE (kbar)', None))
    for axis, (name, label, key) in zip(axes, panels):
        axis.plot(data['num_train_frames'], data[name], 'o-', color='tab:blue')
        if below.any():
            axis.plot(data['num_train_frames'][below], data[name][below], 'o', color='tab:green', markersize=9,
                      label='below both thresholds')
        if key in limits:
            axis.axhline(limits[key], color='tab:red', linestyle='--', label=f'threshold {limits[key]:g}')
        axis.set_xlabel('training frames')
        axis.set_ylabel(label)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    figure.suptitle('out-of-sample errors on each new batch, before it joins the training set')
    png = figure_png(figure, dpi=100)
    return {'curve': array, 'plot': orm.SinglefileData(io.BytesIO(png), filename='learning_curve.png')}


def card_test_set(card: orm.WorkflowNode) -> TrainingSet | None:
    """The independent test set a finished physics card offers the loop to keep (and every later card to reuse):
    only from a potential whose MD was stable — a first potential that breaks the crystal makes no test of anything."""
    if 'test_set' in card.outputs and 'card' in card.outputs and \
            'stability' not in card.outputs.card['failed_groups']:
        return card.outputs.test_set
    return None


def _row_value(summary: dict, group: str, prefix: str):
    for row in summary['rows']:
        if row['group'] == group and row['item'].startswith(prefix):
            return row['potential']
    return None


@calcfunction
def start_at_equilibrium(reference_values: orm.Dict, **structures: orm.StructureData) -> dict:
    """The start structures at the labeller's equilibrium: a start that is one of the card's polymorphs becomes the
    labeller-relaxed polymorph (repeated to the start's size); any other is scaled isotropically so that its volume
    per formula unit is a0³ of the labeller's parent phase. Each output's ``description`` says which."""
    from ase import Atoms

    from aiida_ferromlip.materials.paths import scaled_to_lattice

    values = reference_values.get_dict()
    lattice = values['eos']['lattice']
    rows = values.get('polymorphs', {}).get('rows', {}) if 'error' not in values.get('polymorphs', {}) else {}
    outputs = {}
    for key, structure in structures.items():
        atoms = structure.get_ase()
        row = rows.get(key, {})
        relaxed = None
        if row.get('structure') and row.get('converged'):
            relaxed = Atoms(numbers=row['structure']['numbers'], cell=row['structure']['cell'],
                            positions=row['structure']['positions'], pbc=True)
            repeat = round((len(atoms) / len(relaxed)) ** (1 / 3))
            if repeat ** 3 * len(relaxed) != len(atoms) or sorted(relaxed.get_chemical_symbols() * repeat**3) != \
                    sorted(atoms.get_chemical_symbols()):
                relaxed = None
        if relaxed is not None:
            node = orm.StructureData(ase=relaxed.repeat(repeat))
            node.description = f'{key} relaxed by the labeller in its own space group, repeated {repeat}x{repeat}x{repeat}'
        else:
            node = orm.StructureData(ase=scaled_to_lattice(atoms, lattice))
            node.description = f"{key} scaled to the labeller's parent lattice a0 = {lattice:.4f} Å"
        outputs[key] = node
    return outputs


def overrides_merged(below: dict | None, above: dict | None) -> dict:
    """Protocol overrides ``above`` merged over ``below`` (aiida-quantumespresso's ``recursive_merge``), neither
    changed."""
    import copy

    from aiida_quantumespresso.workflows.protocols.utils import recursive_merge

    return recursive_merge(copy.deepcopy(below or {}), copy.deepcopy(above or {}))


class ActiveLearningWorkChain(ProtocolMixin, WorkChain):
    """Grow a TrainingSet and a potential by active learning (the BaTiO3-GAP paper's loop, or the minimalist paper's minimalist one)."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True, required=False,
                             help='Start structures (MD starts here; rattled copies seed the first fit).')
        spec.input('material', valid_type=orm.Str, required=False,
                   help=f'Instead of structures: a material whose known polymorphs start the loop ({MATERIALS}).')
        spec.input('initial_training_set', valid_type=TrainingSet, required=False,
                   help='Continue from an earlier loop: its TrainingSet (no seed labels are made).')
        spec.input('initial_potential', valid_type=POTENTIAL_TYPES, required=False,
                   help='Continue from an earlier loop: its final Potential samples the first iteration (no refit '
                        'before it). Needs `initial_training_set`.')
        spec.input('parameters', valid_type=orm.Dict, default=lambda: orm.Dict(LOOP_DEFAULTS),
                   help=f'Loop control: {sorted(LOOP_DEFAULTS)}.')
        spec.input('select_parameters', valid_type=orm.Dict, required=False,
                   help='See select_candidates (`selector`: fps | random | uncertainty | fps+uncertainty).')
        spec.input('task_code', valid_type=orm.AbstractCode, required=False,
                   help='A ferromlip.atoms_task code: the committee scores candidates with it (uncertainty '
                        "selectors; without it the card's task code is used).")
        spec.expose_inputs(LabelWorkChain, namespace='label', exclude=('structures',))
        fit_namespaces(spec)  # `fit.model` and one `fit.<model>` per model family of the registry
        spec.expose_inputs(SampleCalculation, namespace='sample', exclude=('potential', 'structure'))
        spec.expose_inputs(PhysicsCardWorkChain, namespace='card',
                           exclude=('potential', 'labeller', 'sample'),
                           namespace_options={'required': False, 'populate_defaults': False,
                                              'help': 'The physics card (task code, parameters, tolerances, '
                                                      'material): with it the loop starts at the labeller\'s '
                                                      'equilibrium and converges only on a green card. A continued '
                                                      'loop passes its predecessor\'s `reference_values` (no '
                                                      'labeller side is recomputed) and `test_set` (errors stay '
                                                      'comparable).'})
        spec.inputs.validator = validate_inputs

        spec.outline(
            cls.setup,
            if_(cls.card_enabled)(cls.equilibrate, cls.inspect_equilibrate),
            if_(cls.needs_seed_labels)(cls.label_seed, cls.inspect_seed),
            while_(cls.should_iterate)(
                if_(cls.needs_fit)(cls.fit, if_(cls.fit_waiting)(cls.sample_with_explorer), cls.inspect_fit),
                cls.explore,
                if_(cls.card_decides)(cls.inspect_card),
                if_(cls.not_stopped)(
                    if_(cls.sampling_deferred)(cls.sample),
                    cls.inspect_sample,
                    if_(cls.uses_uncertainty)(cls.score, cls.inspect_score),
                    cls.select,
                    cls.label_candidates,
                    if_(cls.card_beside)(cls.inspect_card, cls.label_card_targets),
                    cls.inspect_candidates,
                ),
            ),
            if_(cls.needs_final_fit)(
                cls.fit, cls.inspect_fit,
                if_(cls.card_enabled)(cls.run_card, cls.inspect_card),
            ),
            cls.results,
        )
        spec.output('potential', valid_type=POTENTIAL_TYPES,
                    help='The final potential: fitted on the final TrainingSet, except in a loop converged on its card, '
                         'where it is the potential whose card is green (fitted before the last batch when that '
                         'batch measured its out-of-sample errors).')
        spec.output('training_set', valid_type=TrainingSet, help='The final TrainingSet: every label of the loop.')
        spec.output('learning_curve', valid_type=orm.ArrayData, required=False)
        spec.output('learning_curve_plot', valid_type=orm.SinglefileData, required=False)
        spec.output('summary', valid_type=orm.Dict, help='Per-iteration counts, errors and the stop reason.')
        spec.output('card', valid_type=orm.Dict, required=False, help="The final potential's physics card.")
        spec.output('card_markdown', valid_type=orm.SinglefileData, required=False, help='The card as Markdown.')
        spec.output('card_plot', valid_type=orm.SinglefileData, required=False, help='The card as a PNG.')
        spec.output('reference_values', valid_type=orm.Dict, required=False,
                    help="The labeller's side of the card (its equilibrium, wells, phonons, polymorphs).")
        spec.output('test_set', valid_type=TrainingSet, required=False,
                    help='The independent test set of the card (never offered to selection).')
        spec.output('trust_plot', valid_type=orm.SinglefileData, required=False,
                    help='Uncertainty selectors: the last trust-level calibration (committee deviation vs true error).')
        declare(spec, 'ERROR_LABELLING_FAILED', 'ERROR_FIT_FAILED', 'ERROR_SAMPLING_FAILED', 'ERROR_CARD_FAILED',
                'STOPPED_BUDGET_EXHAUSTED')

    @classmethod
    def get_protocol_filepath(cls) -> pathlib.Path:
        return PROTOCOLS / 'active_learning.yaml'

    @classmethod
    def get_builder_from_protocol(cls, label_code, fit_code, sample_code, material: str | None = None,
                                  structures: dict | None = None, protocol: str | None = None,
                                  overrides: dict | None = None, *, engine: str = 'reference', model: str = 'gap',
                                  task_code: orm.AbstractCode | None = None):
        """Builder from the protocols of every stage (fast | minimalist | batio3_gap); ``overrides`` merged.

        ``model`` picks the fit: ``gap`` (``fit_code`` a ferromlip.gap_fit code) or ``nequip`` (a
        ferromlip.nequip_train code; the Allegro/NequIP config is generated for the start structures' species).
        ``task_code`` (a ferromlip.atoms_task code) turns on the physics card with the protocol's ``card`` settings:
        the loop then starts at the labeller's equilibrium and converges only when the card is green.
        """
        fit_model = get_model(model)
        inputs = cls.get_protocol_inputs(protocol, cls.material_overrides(material, overrides))
        builder = cls.get_builder()
        if material:
            builder.material = orm.Str(material)
        if structures:
            builder.structures = dict(structures)
        builder.parameters = orm.Dict(inputs['parameters'])
        builder.select_parameters = orm.Dict(inputs['select_parameters'])
        label = LabelWorkChain.get_builder_from_protocol(label_code, {}, inputs['label']['protocol'],
                                                         inputs['label'].get('overrides'), engine=engine)
        builder.label = {'engine': label.engine, 'frames_per_job': label.frames_per_job, engine: label[engine]}
        builder.fit.model = orm.Str(model)
        try:
            starts = start_structures(material, structures or {})
        except ValueError:  # no material and no structures: the port validator says so when the builder runs
            starts = {}
        species = sorted({s for start in starts.values() for s in start.get_ase().get_chemical_symbols()})
        unknown = set(inputs['fit']) - set(MODELS) - {'explorer'}
        if unknown:
            raise ValueError(f'the `fit` overrides are per model family ({", ".join(MODELS)}) or `explorer`, e.g. '
                             f"{{'fit': {{'gap': {{'protocol': ..., 'overrides': ...}}}}}}; got {sorted(unknown)}")
        fit = inputs['fit'][fit_model.name]
        builder.fit[fit_model.name] = fit_model.namespace_inputs(fit_code, fit['protocol'], fit.get('overrides'),
                                                                 species)
        explorer = inputs['fit'].get('explorer')
        if explorer:  # the fit job's protocol named there, over the loop fit's own overrides (the frame weights)
            overrides = overrides_merged(fit.get('overrides'), explorer.get('overrides'))
            builder.fit.explorer = orm.Dict(explorer_settings(fit_model, fit_code, explorer['protocol'], overrides,
                                                              species))
        sample = SampleCalculation.get_protocol_inputs(inputs['sample']['protocol'], inputs['sample'].get('overrides'))
        builder.sample = SampleCalculation.job_namespace(sample_code, sample)
        if task_code is not None:
            builder.task_code = task_code
            card = PhysicsCardWorkChain.get_protocol_inputs(inputs['card']['protocol'], inputs['card'].get('overrides'))
            builder.card = {'task_code': task_code, 'parameters': orm.Dict(card['parameters']),
                            'tolerances': orm.Dict(card['tolerances']),
                            'material': orm.Str(inputs['card'].get('material') or material or 'BaTiO3')}
        return builder

    @classmethod
    def material_overrides(cls, material: str | None, overrides: dict | None) -> dict | None:
        """The protocol file's ``material_inputs`` of ``material`` with ``overrides`` merged over them (neither is
        changed): what ``get_protocol_inputs`` merges over the protocol."""
        per_material = cls._load_protocol_file().get('material_inputs', {}).get(material or '', {})
        if not per_material:
            return overrides
        return overrides_merged(per_material, overrides)

    # ----------------------------------------------------------------------------------------------- steps
    def setup(self):
        self.ctx.loop = loop_parameters(self.inputs.parameters)
        material = self.inputs.material.value if 'material' in self.inputs else None
        starts = start_structures(material, self.inputs.get('structures', {}))
        self.ctx.starts = {key: (s if s.is_stored else s.store()) for key, s in starts.items()}
        self.ctx.stages = loop_stages(self.ctx.loop['stages'], material, starts)
        self.ctx.stage = 0
        if len(self.ctx.stages) > 1:
            self.report('stages: ' + ' -> '.join('+'.join(stage) for stage in self.ctx.stages))
        self.ctx.iteration = 0
        self.ctx.errors = []          # Dict nodes, one per iteration
        self.ctx.history = []
        self.ctx.below = 0
        self.ctx.stop_reason = None
        self.ctx.targets = {}
        self.ctx.card = None
        self.ctx.card_passed = False
        self.ctx.fitted_on_current = False
        if 'initial_training_set' in self.inputs:
            self.ctx.training_set = self.inputs.initial_training_set
            self.report(f'continuing from TrainingSet<{self.ctx.training_set.pk}> ({len(self.ctx.training_set)} frames)')
        if 'test_set' in self.inputs.get('card', {}):
            self.ctx.test_set = self.inputs.card.test_set
            self.report(f'independent test set given: TrainingSet<{self.ctx.test_set.pk}> ({len(self.ctx.test_set)} '
                        'frames)')
        if 'initial_potential' in self.inputs:
            self.ctx.potential = self.inputs.initial_potential
            self.report(f'iteration 0 samples with the given {self.ctx.potential.__class__.__name__}<'
                        f'{self.ctx.potential.pk}> (no refit)')

    def card_enabled(self):
        return 'task_code' in self.inputs.get('card', {})

    def _card_inputs(self) -> dict:
        inputs = self.exposed_inputs(PhysicsCardWorkChain, namespace='card')
        inputs['labeller'] = self.exposed_inputs(LabelWorkChain, namespace='label')
        return inputs

    def equilibrate(self):
        """The labeller's side of the card first: its parent EOS gives the lattice the start cells are scaled to
        (given as ``card.reference_values``, e.g. by a continued loop, it is not recomputed)."""
        if 'reference_values' in self.inputs.card:
            self.report(f"labeller's side of the physics card given: Dict<{self.inputs.card.reference_values.pk}>")
            return None
        inputs = self._card_inputs()
        inputs['metadata'] = {'call_link_label': 'card_labeller'}
        self.report("labeller's side of the physics card: parent EOS, polymorph relaxations, paths, phonons")
        return self.to_context(card_reference=self.submit(PhysicsCardWorkChain, **inputs))

    def inspect_equilibrate(self):
        if 'reference_values' in self.inputs.card:
            self.ctx.reference_values = self.inputs.card.reference_values
        else:
            node = self.ctx.card_reference
            if not node.is_finished_ok:
                return self.exit_codes.ERROR_CARD_FAILED.format(
                    detail=f'{node.process_label}<{node.pk}>: {node.exit_message}')
            self.ctx.reference_values = node.outputs.reference_values
            self.ctx.card_frames = card_frames(node)  # every later card of the loop takes them (run_card)
        eos = self.ctx.reference_values['eos']
        self.ctx.starts = start_at_equilibrium(self.ctx.reference_values, **self.ctx.starts,
                                               metadata={'call_link_label': 'start_at_equilibrium'})
        self.report(f"labeller's parent equilibrium a0 = {eos['lattice']:.4f} Å (B = {eos['bulk_modulus_GPa']:.0f} "
                    f"GPa); start structures: " + '; '.join(s.description for _, s in sorted(self.ctx.starts.items())))
        return None

    def run_card(self):
        self._submit_card()

    def _submit_card(self, await_card: bool = True):
        """The physics card of the current potential; without ``await_card`` it is kept in the context for a later
        step to await (``label_candidates``)."""
        inputs = self._card_inputs()
        # with the MD code: the potential's MD, and (in the first card) the labeller's own where the labeller is the
        # cheap reference model, beside the potential's jobs rather than before the seed labels
        sample = self.exposed_inputs(SampleCalculation, namespace='sample')
        inputs.update(potential=self.ctx.potential, reference_values=self.ctx.reference_values,
                      sample={'code': sample['code'],
                              'metadata': {'options': sample.get('metadata', {}).get('options', {})}})
        if 'test_set' in self.ctx:
            inputs['test_set'] = self.ctx.test_set
        if self.ctx.get('card_frames'):
            inputs['frames'] = self.ctx.card_frames
        inputs['metadata'] = {'call_link_label': f'card_{self.ctx.iteration:03d}'}
        self._await_or_keep('card', self.submit(PhysicsCardWorkChain, **inputs), await_card)

    def _await_or_keep(self, key: str, node, await_it: bool) -> None:
        """``node`` into the context under ``key``: awaited by the next step, or only kept for a later step to
        await (``to_context`` on a process that has already ended resolves at once)."""
        if await_it:
            self.to_context(**{key: node})
        else:
            self.ctx[key] = node

    def inspect_card(self):
        node = self.ctx.card
        if not node.is_finished_ok or 'card' not in node.outputs:
            return self.exit_codes.ERROR_CARD_FAILED.format(detail=f'{node.process_label}<{node.pk}>: {node.exit_message}')
        summary = node.outputs.card.get_dict()
        if node.outputs.reference_values.uuid != self.ctx.reference_values.uuid:
            # the first card added the labeller's MD volumes: later cards (and a continued loop) reuse them
            self.ctx.reference_values = node.outputs.reference_values
        test_set = card_test_set(node)
        if 'test_set' not in self.ctx and test_set is not None:
            self.ctx.test_set = test_set
            self.report(f'independent test set fixed: TrainingSet<{self.ctx.test_set.pk}> '
                        f'({len(self.ctx.test_set)} frames)')
        if not self.ctx.get('card_frames'):
            self.ctx.card_frames = card_frames(node)
        self.ctx.card_failed = summary['failed_groups']
        self.ctx.targets = dict(node.outputs.targets) if 'targets' in node.outputs else {}
        self.ctx.card_record = {
            'card_passed': summary['passed'], 'card_items_passed': summary['num_passed'],
            'card_items': summary['num_items'], 'card_failed': summary['failed_groups'], 'card': node.pk,
            'test_energy_per_fu_meV_rmse': _row_value(summary, 'test_set', 'energy'),
            'test_forces_meV_per_A_rmse': _row_value(summary, 'test_set', 'force')}
        for row in summary['rows']:
            if not row['passed']:
                self.report(f'card item failing: {row["group"]}: {row["item"]} (labeller '
                            f'{row["labeller"]}, potential {row["potential"]}, tolerance {row["tolerance"]})')
        self.report(f'iteration {self.ctx.iteration}: physics card of {self.ctx.potential.__class__.__name__}<'
                    f'{self.ctx.potential.pk}>: {summary["num_passed"]}/{summary["num_items"]} items pass'
                    + (f'; {len(self.ctx.targets)} frames of failing items go to the next batch'
                       if self.ctx.targets else ''))
        self.ctx.card_passed = summary['passed']
        if summary['passed'] and self.ctx.below >= self.ctx.loop['converged_iterations']:
            # The learning curve was below the thresholds up to the batch before this fit, and this potential's
            # out-of-sample errors on the card's independent test set are within them (an item of the green card):
            # converged on it, without sampling for it. Otherwise its own batch decides (inspect_candidates).
            self._stage_converged('out-of-sample errors below the thresholds, then the physics card green '
                                  '(its independent test set within them too)')
        return None

    def _stage_converged(self, why: str) -> str:
        """The current stage converged: the next stage starts, or the loop stops converged after the last one."""
        if self.ctx.stage + 1 < len(self.ctx.stages):
            self.ctx.stage += 1
            self.ctx.below = 0
            message = (f'stage {self.ctx.stage} of {len(self.ctx.stages)} converged ({why}); stage '
                       f'{self.ctx.stage + 1} samples from {", ".join(self.ctx.stages[self.ctx.stage])}')
        else:
            self.ctx.stop_reason = 'converged'
            message = f'converged: {why}'
        self.report(message)
        return message

    def not_stopped(self):
        return not self.ctx.stop_reason

    def needs_final_fit(self):
        """Refit on the last batch too, unless the current potential is the validated one: with the card, the loop
        converges on the potential whose card is green and whose out-of-sample errors on the last batch are below the
        thresholds, and a refit would be a potential that neither test has seen."""
        return not self.ctx.fitted_on_current and not (self.card_enabled() and self.ctx.stop_reason == 'converged')

    def needs_seed_labels(self):

        return 'initial_training_set' not in self.inputs

    def label_seed(self):
        from aiida_ferromlip.materials import rattled_strained

        loop = self.ctx.loop
        structures = {}
        first = set(self.ctx.stages[0])
        for index, (key, start) in enumerate(sorted(self.ctx.starts.items())):
            if key not in first:
                continue
            frames = rattled_strained(start.get_ase(), loop['seed_frames_per_structure'], rattle=loop['rattle'],
                                      strain=loop['strain'], seed=loop['seed'] + index)
            for j, atoms in enumerate(frames):
                structures[f'seed_{key}_{j:02d}'] = orm.StructureData(ase=atoms)
        self.report(f'seed: labelling {len(structures)} rattled/strained copies of {len(first)} structures')
        return self._launch_labels(structures, 'seed')

    def _launch_labels(self, structures, name, key='labels', await_labels: bool = True):
        inputs = self.exposed_inputs(LabelWorkChain, namespace='label')
        inputs['structures'] = structures
        inputs['metadata'] = {'call_link_label': f'label_{name}'}
        self._await_or_keep(key, self.submit(LabelWorkChain, **inputs), await_labels)

    def inspect_seed(self):
        node = self.ctx.labels
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_LABELLING_FAILED.format(detail=f'{node.process_label}<{node.pk}>: {node.exit_message}')
        self.ctx.training_set = node.outputs.training_set
        self.ctx.num_labels = len(self.ctx.training_set)
        self.report(f'seed TrainingSet<{self.ctx.training_set.pk}>: {len(self.ctx.training_set)} frames, '
                    f'{len(node.outputs.failed_frames.get_dict())} label(s) failed')
        return None

    def should_iterate(self):
        if self.ctx.stop_reason:
            return False
        loop = self.ctx.loop
        if self.ctx.iteration >= loop['max_iterations']:
            self.ctx.stop_reason = f'the maximum of {loop["max_iterations"]} iterations was reached'
            return False
        batch = merged_options(self.inputs.get('select_parameters'))['num_select']
        used = self.ctx.get('num_labels', 0)
        if used + batch > loop['max_labels']:
            self.ctx.stop_reason = f'the label budget ({used} of {loop["max_labels"]} used) cannot take another batch'
            return False
        return True

    def needs_fit(self):
        """Every iteration refits, except the first of a loop continued with its `initial_potential`."""
        return not (self.ctx.iteration == 0 and 'initial_potential' in self.inputs)

    def fit(self):
        """The fit job inside its restart wrapper (out of memory, NaN loss: rescued, not the end of the loop)."""
        model = get_model(self.inputs.fit.model.value)
        inputs = self.exposed_inputs(model.process_class, namespace=model.namespace)
        inputs['training_set'] = self.ctx.training_set
        wrapper = model.restart_wrapper
        run = {wrapper._namespace: inputs, 'metadata': {'call_link_label': f'fit_{self.ctx.iteration:03d}'}}
        self.ctx.explorer_potential = None
        self.ctx.sampled_early = False
        if 'explorer' in self.inputs.fit and not self.ctx.stop_reason:  # the final fit samples nothing
            # The explorer's fit first, the loop's fit as soon as it is done, beside the explorer's MD
            # (sample_with_explorer): the cheap fit's minutes are the only ones without MD. Not both fits at once:
            # each fit's memory budget is the machine's, and two gap_fit together outgrow it (measured: the
            # `batio3_gap` fit at 14.5 GB beside the `balanced` explorer's 8.3 GB, on 239 frames, was killed by the
            # out-of-memory killer of a 23 GB machine).
            explorer = explorer_job_inputs(inputs, self.inputs.fit.explorer)
            self.to_context(explorer_fit=self.submit(wrapper, **{
                wrapper._namespace: explorer,
                'metadata': {'call_link_label': f'fit_{self.ctx.iteration:03d}_explorer'}}))
            self.ctx.fit_waiting = run
        else:
            self.to_context(fit=self.submit(wrapper, **run))
        self.ctx.committee_fits = []
        if self.uses_committee() and not self.ctx.stop_reason:  # the final fit samples nothing: no committee
            committee = self.ctx.loop['committee']
            for member in range(1, int(committee['size'])):
                member_inputs = model.member_inputs(inputs, member, committee)
                label = f'fit_{self.ctx.iteration:03d}_member_{member:02d}'
                key = f'committee_fit_{member:02d}'
                self.to_context(**{key: self.submit(wrapper, **{wrapper._namespace: member_inputs,
                                                                'metadata': {'call_link_label': label}})})
                self.ctx.committee_fits.append(key)

    def fit_waiting(self):
        """The loop's fit waits for the explorer's (``fit``)."""
        return self.ctx.get('fit_waiting') is not None

    def sample_with_explorer(self):
        """The explorer is fitted: its MD starts, and the loop's fit beside it (unless a green card alone would end
        the loop: then the card runs first, as in ``explore``). A failed explorer fit loses nothing: the loop's fit
        samples instead."""
        explorer = self.ctx.explorer_fit
        if explorer.is_finished_ok:
            self.ctx.explorer_potential = explorer.outputs.potential
            metrics = explorer.outputs.metrics.get_dict() if 'metrics' in explorer.outputs else {}
            self.report(f'iteration {self.ctx.iteration}: explorer {self.ctx.explorer_potential.__class__.__name__}<'
                        f'{self.ctx.explorer_potential.pk}> samples (held-out force RMSE '
                        f'{metrics.get("forces_meV_per_A_rmse", float("nan")):.0f} meV/Å)')
            if not self._sampling_waits_for_the_card():
                self.ctx.sampler = self.ctx.explorer_potential
                self._submit_sampling(await_runs=False)  # awaited from ``explore`` on, beside the card
                self.ctx.sampled_early = True
        else:
            self.report(f'iteration {self.ctx.iteration}: the explorer fit failed ({explorer.process_label}<'
                        f'{explorer.pk}>: [{explorer.exit_status}] {explorer.exit_message}); the fit samples')
        wrapper = get_model(self.inputs.fit.model.value).restart_wrapper
        self.to_context(fit=self.submit(wrapper, **self.ctx.fit_waiting))
        self.ctx.fit_waiting = None

    def inspect_fit(self):
        node = self.ctx.fit
        if not node.is_finished_ok:
            jobs = sorted(node.called, key=lambda n: n.ctime)
            last = f'; last job {jobs[-1].process_label}<{jobs[-1].pk}>: [{jobs[-1].exit_status}] ' \
                   f'{jobs[-1].exit_message}' if jobs else ''
            return self.exit_codes.ERROR_FIT_FAILED.format(
                detail=f'{node.process_label}<{node.pk}>: [{node.exit_status}] {node.exit_message}{last}')
        self.ctx.potential = node.outputs.potential
        self.ctx.fitted_on_current = True
        metrics = node.outputs.metrics.get_dict() if 'metrics' in node.outputs else {}
        self.report(f'iteration {self.ctx.iteration}: fitted {self.ctx.potential.__class__.__name__}<'
                    f'{self.ctx.potential.pk}> on {len(self.ctx.training_set)} frames; held-out force RMSE '
                    f'{metrics.get("forces_meV_per_A_rmse", float("nan")):.0f} meV/Å')
        self.ctx.sampler = self.ctx.get('explorer_potential') or self.ctx.potential
        self.ctx.committee = None
        if self.ctx.committee_fits:
            members, failed = {'member_00': self.ctx.potential}, []
            for key in self.ctx.committee_fits:
                member = self.ctx[key]
                if member.is_finished_ok:
                    members[f'member_{key[-2:]}'] = member.outputs.potential
                else:
                    failed.append(f'{member.process_label}<{member.pk}>: [{member.exit_status}] {member.exit_message}')
            for message in failed:
                self.report(f'committee member left out: {message}')
            if len(members) < 2:
                return self.exit_codes.ERROR_FIT_FAILED.format(detail='no committee member besides the loop\'s fit: '
                                                                      + '; '.join(failed))
            self.ctx.committee = committee_of(**members, metadata={
                'call_link_label': f'committee_{self.ctx.iteration:03d}'})
            self.report(f'iteration {self.ctx.iteration}: committee CommitteePotential<{self.ctx.committee.pk}> of '
                        f'{len(members)} fits')
        return None

    def uses_committee(self):
        return needs_committee(self.inputs.get('select_parameters'))

    def uses_uncertainty(self):
        return needs_uncertainty(self.inputs.get('select_parameters'))

    def _task_code(self):
        return self.inputs.task_code if 'task_code' in self.inputs else self.inputs.card.task_code

    def has_task_code(self):
        return 'task_code' in self.inputs or self.card_enabled()

    def _submit_task(self, model, task: dict, name: str, **nodes):
        """An ``AtomsTaskCalculation`` of ``model`` on ``nodes`` (``structures`` or ``trajectories``) with the loop's
        task code and the card's task options."""
        inputs = {'code': self._task_code(), 'model': model, 'task': orm.Dict(task),
                  'metadata': {'call_link_label': f'{name}_{self.ctx.iteration:03d}'}, **nodes}
        options = self.inputs.card.get('task_options') if 'card' in self.inputs else None
        if options is not None:
            inputs['metadata']['options'] = options.get_dict()
        return self.submit(AtomsTaskCalculation, **inputs)

    def score(self):
        """Every sampled frame scored in an ``energies`` task job: the committee's force deviation, or the loop's
        GAP with quippy's predictive variance (``uncertainty: gap_variance``: no committee fitted)."""
        task = {'task': 'energies', 'stress': False}
        model = self.ctx.committee
        if not self.uses_committee():
            task['uncertainty'] = 'gap_variance'
            model = self.ctx.potential
        return self.to_context(score=self._submit_task(model, task, 'score', trajectories=self.ctx.trajectories))

    def inspect_score(self):
        node = self.ctx.score
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_SAMPLING_FAILED.format(
                detail=f'the sampled frames could not be scored: {node.process_label}<{node.pk}>: '
                       f'[{node.exit_status}] {node.exit_message}')
        return None

    def explore(self):
        """The potential's physics card and its sampling MD side by side: both need only the potential (the card's
        failing items join the batch at labelling), and where the cores are more than the card's MD and the sampling
        fill one at a time, they run at once. On two cores both are CPU-bound and the pair takes as long as one after
        the other (docs/throughput.md), so when a green card alone would end the loop (the learning curve is already
        below the thresholds) the card runs first and the sampling only if it is needed. Otherwise the card's result
        cannot end the loop, and selection and the batch's labels start as soon as the sampling is done, while the
        card still runs (``card_beside``): the card is awaited only before its failing items are labelled."""
        sampled_early = self.ctx.get('sampled_early')
        self.ctx.sampling_deferred = not sampled_early and self._sampling_waits_for_the_card()
        self.ctx.card_beside = self.card_enabled() and not self._sampling_waits_for_the_card()
        # the sampling first: the card's first steps are calcfunctions in this process, and jobs submitted after them
        # were uploaded seconds later (docs/throughput.md, stop 38)
        if sampled_early:  # the explorer's runs, started beside the fit
            self.to_context(**{f'sample_{key}': self.ctx[f'sample_{key}'] for key in self.ctx.sampled_keys})
        elif not self.ctx.sampling_deferred:
            self.sample()
        if self.card_enabled():
            self._submit_card(await_card=not self.ctx.card_beside)

    def card_decides(self):
        """The card was awaited before selection: a green card may end the loop."""
        return self.card_enabled() and not self.ctx.card_beside

    def card_beside(self):
        """The card still runs beside the selection and the batch's labels."""
        return self.ctx.card_beside

    def _sampling_waits_for_the_card(self) -> bool:
        """A green card alone would end the loop (the learning curve is already below the thresholds)."""
        return self.card_enabled() and self.ctx.below >= self.ctx.loop['converged_iterations']

    def sampling_deferred(self):
        return self.ctx.sampling_deferred

    def sample(self):
        self._submit_sampling()

    def _submit_sampling(self, await_runs: bool = True):
        """One ``SampleCalculation`` per start structure of the stage, with the sampler (the explorer or the fit);
        without ``await_runs`` they are kept in the context for a later step to await."""
        inputs = self.exposed_inputs(SampleCalculation, namespace='sample')
        switch = self.ctx.loop['flexible_cell_from_iteration']
        if switch is not None and self.ctx.iteration >= switch and inputs['parameters']['ensemble'] != 'nst':
            # The BaTiO3-GAP paper sampled with NVT replica exchange, then let the cell relax (NpT): same ladder, NST ensemble.
            inputs['parameters'] = orm.Dict({**inputs['parameters'].get_dict(), 'ensemble': 'nst'})
            self.report(f'iteration {self.ctx.iteration}: sampling with a fully flexible cell (NST) from now on')
        # recorded: the card beside this sampling may end the stage before inspect_sample reads the runs
        self.ctx.sampled_keys = sorted(self.ctx.stages[self.ctx.stage])
        for key in self.ctx.sampled_keys:
            structure = self.ctx.starts[key]
            run = {**inputs, 'potential': self.ctx.get('sampler') or self.ctx.potential, 'structure': structure,
                   'metadata': {**inputs.get('metadata', {}),
                                'call_link_label': f'sample_{self.ctx.iteration:03d}_{key}'}}
            self._await_or_keep(f'sample_{key}', self.submit(SampleCalculation, **run), await_runs)

    def inspect_sample(self):
        trajectories, failed = {}, []
        for key in self.ctx.sampled_keys:
            node = self.ctx[f'sample_{key}']
            if not node.is_finished_ok:
                failed.append(f'{node.process_label}<{node.pk}>: [{node.exit_status}] {node.exit_message}')
                continue
            for name, trajectory in node.outputs.trajectories.items():
                trajectories[f'{key}__{name}'] = trajectory
        for message in failed:
            self.report(f'sampling run left out: {message}')
        if not trajectories:
            return self.exit_codes.ERROR_SAMPLING_FAILED.format(detail='; '.join(failed))
        self.ctx.trajectories = trajectories
        return None

    def _explorer_record(self) -> dict:
        """The explorer potential this iteration sampled with, for the summary (empty when the fit sampled)."""
        sampler = self.ctx.get('sampler')
        if sampler is None or sampler.uuid == self.ctx.potential.uuid:
            return {}
        return {'sampled_with': f'{sampler.__class__.__name__}<{sampler.pk}>'}

    def select(self):
        inputs = {'training_set': self.ctx.training_set, **self.ctx.trajectories,
                  'metadata': {'call_link_label': f'select_{self.ctx.iteration:03d}'}}
        if 'select_parameters' in self.inputs:
            inputs['parameters'] = self.inputs.select_parameters
        if self.uses_uncertainty():
            levels = trust_levels(**({'parameters': self.inputs.select_parameters}
                                     if 'select_parameters' in self.inputs else {}),
                                  **self.ctx.get('deviation_pairs', {}),
                                  metadata={'call_link_label': f'trust_{self.ctx.iteration:03d}'})
            self.ctx.trust_plot = levels['plot']
            inputs.update(predictions=self.ctx.score.outputs.results, trust=levels['trust'])
        results = select_candidates(**inputs)
        report = results['report'].get_dict()
        self.ctx.selected = {key: node for key, node in results.items() if key.startswith('selected_')}
        selector = report.get('selector', 'fps')
        self.report(f'iteration {self.ctx.iteration}: sampled {report["num_sampled"]} frames, rejected '
                    f'{report["num_rejected"]} as unphysical, {report["num_candidates"]} decorrelated candidates '
                    f'({report.get("num_unresolved_trajectories", 0)} of {len(report["trajectories"])} trajectories too '
                    f'short to show their autocorrelation time gave their last frame only), '
                    f'selected {report["num_selected"]} by {selector}')
        trust = report.get('trust')
        if trust:
            state = 'calibrated' if trust['calibrated'] else 'uncalibrated: lower level at the median score'
            self.report(f'iteration {self.ctx.iteration}: trust levels {trust["lower"]:.3g}-{trust["upper"]:.3g} '
                        f'on {SCORE_LABELS[trust["uncertainty"]]} ({state}); '
                        f'candidates: {trust["accurate"]} below, {trust["candidate"]} inside, {trust["failed"]} above')
        self.ctx.history.append({'iteration': self.ctx.iteration, 'stage': self.ctx.stage,
                                 'sampled': report['num_sampled'],
                                 'rejected': report['num_rejected'], 'selected': report['num_selected'],
                                 'selector': selector, **({'trust': trust} if trust else {}),
                                 **self._explorer_record()})
        if self.ctx.card_beside:  # the card's record and failing items join when it is done (label_card_targets)
            self.ctx.card_batch = {}
            self.ctx.no_candidate = None if self.ctx.selected else self._no_candidate_reason(trust)
            return
        self.ctx.history[-1].update(self.ctx.pop('card_record', {}))
        message = self._take_card_targets()
        if message:
            self.report(message)
        if not self.ctx.selected and not self.ctx.card_batch:
            self.ctx.stop_reason = self._no_candidate_reason(trust)

    @staticmethod
    def _no_candidate_reason(trust: dict | None) -> str:
        return ('selection found no new structure far from the training set' if not trust else
                f'no candidate inside the trust band ({trust["accurate"]} below it, {trust["failed"]} above it)')

    def _take_card_targets(self) -> str | None:
        """Frames of failing card items are labelled beside the batch, not in it: they are chosen to be hard, so the
        out-of-sample learning curve stays on the MD frames selection picked. Returns the line for the report (made by
        the calling step, so that `verdi process report` names the step)."""
        self.ctx.card_batch = {f'card_{key}': node for key, node in self.ctx.targets.items()}
        self.ctx.targets = {}
        if not self.ctx.card_batch:
            return None
        self.ctx.history[-1]['card_targets'] = len(self.ctx.card_batch)
        return (f'iteration {self.ctx.iteration}: {len(self.ctx.card_batch)} frames from failing card items '
                f'({", ".join(self.ctx.get("card_failed", []))}) are labelled with the batch')

    def label_candidates(self):
        """The batch's labels and the potential's predictions on it; the card's failing items too, unless the card
        still runs (``card_beside``: then only the card is awaited here, and ``label_card_targets`` awaits the rest)."""
        prefix = f'it{self.ctx.iteration:03d}'
        await_now = not self.ctx.card_beside
        if self.ctx.selected:
            structures = {f'{prefix}_{key}': node for key, node in self.ctx.selected.items()}
            self._launch_labels(structures, f'{self.ctx.iteration:03d}', await_labels=await_now)
            if self.has_task_code():  # the potential's predictions on the same frames, beside the labels
                self._await_or_keep('predictions', self._submit_task(self.ctx.potential, {'task': 'energies'},
                                                                     'predict', structures=structures), await_now)
        if self.ctx.get('card_batch'):
            self._launch_card_targets()
        if not await_now:
            self.to_context(card=self.ctx.card)

    def _launch_card_targets(self):
        structures = {f'it{self.ctx.iteration:03d}_{key}': node for key, node in self.ctx.card_batch.items()}
        self._launch_labels(structures, f'{self.ctx.iteration:03d}_card', key='card_labels')

    def label_card_targets(self):
        """The card, run beside selection and labelling, is done: its record joins the iteration's row, its failing
        items are labelled, and the batch's labels and predictions are awaited."""
        self.ctx.history[-1].update(self.ctx.pop('card_record', {}))
        message = self._take_card_targets()
        if message:
            self.report(message)
            self._launch_card_targets()
        if self.ctx.selected:
            self.to_context(labels=self.ctx.labels)
            if self.ctx.get('predictions') is not None:
                self.to_context(predictions=self.ctx.predictions)
        elif not self.ctx.card_batch:
            self.ctx.stop_reason = self.ctx.no_candidate

    def inspect_candidates(self):
        history = self.ctx.history[-1]
        predictions = self.ctx.pop('predictions', None)
        card_labels = self.ctx.pop('card_labels', None) if self.ctx.get('card_batch') else None
        if card_labels is not None:
            history['card_labels_failed'] = len(card_labels.outputs.failed_frames.get_dict()) \
                if 'failed_frames' in card_labels.outputs else len(self.ctx.card_batch)
            if 'training_set' in card_labels.outputs:
                card_set = card_labels.outputs.training_set
                self.ctx.num_labels = self.ctx.get('num_labels', 0) + len(card_set)
                self.ctx.training_set = merge_training_sets(
                    current=self.ctx.training_set, card=card_set,
                    metadata={'call_link_label': f'merge_card_{self.ctx.iteration:03d}'})
                self.ctx.fitted_on_current = False
                self.report(f'iteration {self.ctx.iteration}: {len(card_set)} card frames labelled and added')
        if not self.ctx.selected:
            self.ctx.iteration += 1
            return None
        node = self.ctx.labels
        if not node.is_finished_ok:
            history['labels_failed'] = len(self.ctx.selected)
            self.report(f'iteration {self.ctx.iteration}: labelling failed ({node.exit_message}); no new frames')
            self.ctx.iteration += 1
            return None
        batch = node.outputs.training_set
        history['labels_failed'] = len(node.outputs.failed_frames.get_dict())
        self.ctx.num_labels = self.ctx.get('num_labels', 0) + len(batch)

        if self.uses_uncertainty():  # how far the uncertainty score was from the true error: the next calibration
            pairs = deviation_error_pairs(self.ctx.score.outputs.results, self.ctx.score.outputs.labels, batch,
                                          **({'parameters': self.inputs.select_parameters}
                                             if 'select_parameters' in self.inputs else {}),
                                          **self.ctx.selected,
                                          metadata={'call_link_label': f'deviation_errors_{self.ctx.iteration:03d}'})
            self.ctx.deviation_pairs = {**self.ctx.get('deviation_pairs', {}), f'it{self.ctx.iteration:03d}': pairs}
        # Out-of-sample errors of the current potential, before the batch joins the training set: from its task job's
        # predictions when the loop has a task code, else evaluated here.
        label = {'call_link_label': f'errors_{self.ctx.iteration:03d}'}
        if predictions is not None and predictions.is_finished_ok and 'labels' in predictions.outputs:
            errors = batch_errors(self.ctx.potential, batch, predictions.outputs.labels, metadata=label)
        else:
            if predictions is not None:
                self.report(f'iteration {self.ctx.iteration}: the predictions job {predictions.process_label}<'
                            f'{predictions.pk}> failed ([{predictions.exit_status}] {predictions.exit_message}); '
                            'the errors are evaluated here instead')
            errors = prediction_errors(self.ctx.potential, batch, metadata=label)
        self.ctx.errors.append(errors)
        e, f = errors['energy_per_fu_meV_rmse'], errors['forces_meV_per_A_rmse']
        history.update({'energy_per_fu_meV_rmse': e, 'forces_meV_per_A_rmse': f,
                        'stress_kbar_rmse': errors['stress_kbar_rmse'], 'training_frames': len(self.ctx.training_set)})
        self.ctx.training_set = merge_training_sets(
            current=self.ctx.training_set, new=batch,
            metadata={'call_link_label': f'merge_{self.ctx.iteration:03d}'})

        self.ctx.fitted_on_current = False

        thresholds = self.ctx.loop['thresholds']
        below = e <= thresholds['energy_meV_per_fu'] and f <= thresholds['forces_meV_per_A']
        self.ctx.below = self.ctx.below + 1 if below else 0
        decision = 'below thresholds' if below else 'above thresholds'
        if self.ctx.below >= self.ctx.loop['converged_iterations']:
            if not self.card_enabled():
                decision = self._stage_converged('out-of-sample errors below the thresholds')
            elif self.ctx.card_passed:
                decision = self._stage_converged(f'out-of-sample errors below the thresholds and the physics card '
                                                 f'green, both for {self.ctx.potential.__class__.__name__}<'
                                                 f'{self.ctx.potential.pk}>')
            else:
                decision += f'; card items failing: {", ".join(self.ctx.get("card_failed", []))}'
        history['decision'] = decision
        self.report(f'iteration {self.ctx.iteration}: out-of-sample errors on {len(batch)} new frames: energy '
                    f'{e:.2f} meV/f.u., forces {f:.0f} meV/Å ({decision}); {history["labels_failed"]} label(s) '
                    f'failed; TrainingSet<{self.ctx.training_set.pk}> now {len(self.ctx.training_set)} frames')
        self.ctx.iteration += 1
        return None

    def results(self):
        self.out('potential', self.ctx.potential)
        self.out('training_set', self.ctx.training_set)
        if self.ctx.get('trust_plot') is not None:
            self.out('trust_plot', self.ctx.trust_plot)
        if self.ctx.errors:
            curve = learning_curve(thresholds=orm.Dict(self.ctx.loop['thresholds']),
                                   **{f'iteration_{i:03d}': e for i, e in enumerate(self.ctx.errors)})
            self.out('learning_curve', curve['curve'])
            self.out('learning_curve_plot', curve['plot'])
        reason = self.ctx.stop_reason or 'the maximum number of iterations was reached'
        if reason != 'converged' and len(self.ctx.stages) > 1:
            reason += f' in stage {self.ctx.stage + 1} of {len(self.ctx.stages)}'
        if 'card_record' in self.ctx:  # the card of the final potential (no sampling after it)
            self.ctx.history.append({'iteration': self.ctx.iteration, 'sampled': 0, 'rejected': 0, 'selected': 0,
                                     'final': True, 'training_frames': len(self.ctx.training_set),
                                     **self.ctx.pop('card_record')})
        if self.card_enabled():
            node = self.ctx.card
            for key, port in (('card', 'card'), ('markdown', 'card_markdown'), ('plot', 'card_plot')):
                if key in node.outputs:
                    self.out(port, node.outputs[key])
            self.out('reference_values', self.ctx.reference_values)
            if 'test_set' in self.ctx:
                self.out('test_set', self.ctx.test_set)
            elif 'test_set' in node.outputs:  # never fixed (no card had a stable MD): the last card's
                self.out('test_set', node.outputs.test_set)
            if reason != 'converged' and self.ctx.get('card_failed'):
                reason += f'; card items still failing: {", ".join(self.ctx.card_failed)}'
            elif reason != 'converged' and self.ctx.below < self.ctx.loop['converged_iterations']:
                reason += '; out-of-sample errors above the thresholds'
        self.out('summary', loop_summary(orm.List(self.ctx.history), orm.Str(reason),
                                         orm.Int(self.ctx.get('num_labels', len(self.ctx.training_set))),
                                         self.ctx.training_set, metadata={'call_link_label': 'summary'}))
        # every stop refits on the whole set except the one on a potential judged by its own last batch
        fitted = ('fitted before the last batch' if not self.ctx.fitted_on_current
                  else f'on {len(self.ctx.training_set)} frames')
        self.report(f'stopped: {reason}; final potential {self.ctx.potential.pk} {fitted}; '
                    f'TrainingSet<{self.ctx.training_set.pk}> ({len(self.ctx.training_set)} frames)')
        if reason != 'converged':
            return self.exit_codes.STOPPED_BUDGET_EXHAUSTED.format(reason=reason)
        return None
