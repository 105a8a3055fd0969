"""Model families behind one contract, as the labellers are (``workflows/label/engines.py``), so the loop never
branches on a model's name.

A ``Model`` knows the job that fits it, the restart wrapper the job runs in, the loop's input namespace for it, how
to build that namespace's inputs from a protocol, what to check before the first label is paid for, and how a
committee member's inputs differ from the loop's fit. Models: ``gap`` (gap_fit) and ``nequip`` (NequIP/Allegro
training; Allegro is a nequip config).

The loop has one ``fit`` namespace, laid out as the ``label`` namespace is: ``fit.model`` picks the family and
``fit.<model>`` holds that family's job inputs (``fit.gap``, ``fit.nequip``), one sub-namespace per entry of
``MODELS``, declared by a loop over this registry (``fit_namespaces``). A new model family is a new entry here, not
a new port in the loop.

``fit.explorer`` (optional) is a second, cheaper fit of the same family on the same TrainingSet each iteration, used
only to sample: exploring costs most of an iteration's CPU (REMD over a temperature ladder), and an MD step of the
explorer costs a fraction of the fitted model's. Selection, errors, the physics card and the loop's output all use
the loop's own fit (the throughput issue: "explore with the fast model, label what it finds, fit the accurate one").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from aiida import orm

from aiida_ferromlip.calculations.gap_fit import GapFitCalculation, cutoff_problem, split_indices
from aiida_ferromlip.calculations.nequip_train import NequipTrainCalculation, nequip_config
from aiida_ferromlip.validation import cell_height
from aiida_ferromlip.workflows.restart import GapFitBaseWorkChain, NequipTrainBaseWorkChain


def _seed_moved(inputs: dict, member: int, committee: dict) -> tuple[dict, int]:
    parameters = inputs['parameters'].get_dict()
    seed = int(parameters.get('seed', 0)) + member
    return {**inputs, 'parameters': orm.Dict({**parameters, 'seed': seed,
                                              'validation_fraction': float(committee['validation_fraction'])})}, seed


def _gap_member(inputs: dict, member: int, committee: dict) -> dict:
    """Another validation split (so another training subset) and other CUR sparse points."""
    return _seed_moved(inputs, member, committee)[0]


def _nequip_member(inputs: dict, member: int, committee: dict) -> dict:
    """Another validation split and other initial weights (the config's seed)."""
    member_inputs, seed = _seed_moved(inputs, member, committee)
    member_inputs['config'] = orm.Dict({**inputs['config'].get_dict(), 'seed': seed})
    return member_inputs


def _gap_validate(fit: dict, starts: dict, loop: dict, first_count: int) -> str | None:
    """The first fit would refuse start cells thinner than twice the cutoff only after the seed labels were paid
    for: refuse them now."""
    if 'parameters' not in fit:
        return None
    thinnest = min(cell_height(start.cell) for start in starts.values())
    problem = cutoff_problem(fit['parameters'].get_dict(), thinnest * (1 - 2 * loop['strain']))
    return f'start structures: {problem}' if problem else None


def _nequip_validate(fit: dict, starts: dict, loop: dict, first_count: int) -> str | None:
    """Every species needs an atom type; the first training must hold out a validation frame (the job refuses less)."""
    species = {s for start in starts.values() for s in start.get_ase().get_chemical_symbols()}
    typed = set(fit['config'].get_dict().get('model_type_names', [])) if 'config' in fit else set()
    if species - typed:
        return f'the nequip config has no atom type for {", ".join(sorted(species - typed))}'
    fraction = float(fit['parameters'].get_dict().get('validation_fraction', 0.1)) if 'parameters' in fit else 0.1
    _, validation = split_indices(first_count, fraction, 0)
    if len(validation) < 1:
        return (f'the first training set ({first_count} frames) leaves no validation frame at validation_fraction '
                f'{fraction}: seed more frames per structure or raise it')
    return None


def _gap_inputs(stage: dict, species: list[str]) -> dict:
    return {}


def _nequip_inputs(stage: dict, species: list[str]) -> dict:
    """The Allegro/NequIP config is generated for the start structures' species."""
    return {'config': orm.Dict(nequip_config(stage['model'], stage['training'], species,
                                             seed=stage['parameters'].get('seed', 0)))}


@dataclass(frozen=True)
class Model:
    """What the loop needs to know about one model family."""

    name: str
    process_class: type
    restart_wrapper: type
    description: str
    #: ``(fit namespace inputs, start structures, loop parameters, size of the first training set) -> problem or
    #: None``; checked before anything runs
    validate: Callable[[dict, dict, dict, int], str | None]
    #: ``(loop's fit inputs, member number 1, 2, ..., committee settings) -> that member's inputs``
    member_inputs: Callable[[dict, int, dict], dict]
    #: ``(protocol stage inputs, species) -> namespace inputs beyond code, parameters and options``
    extra_inputs: Callable[[dict, list[str]], dict]
    #: the fit job's ``Dict`` inputs that make the model what it is (what an explorer fit replaces)
    settings: tuple[str, ...] = ('parameters',)

    @property
    def namespace(self) -> str:
        """The loop's input namespace of this model's fit job (``fit.<name>``)."""
        return f'fit.{self.name}'

    def given_inputs(self, inputs: dict) -> dict:
        """This model's fit inputs in a loop's (validator's) ``inputs``; empty when none are given."""
        return inputs.get('fit', {}).get(self.name, {})

    def namespace_inputs(self, code, protocol: str | None, overrides: dict | None, species: list[str]) -> dict:
        """The loop's ``namespace`` from the fit job's protocol (``overrides`` merged, never mutated)."""
        stage = self.process_class.get_protocol_inputs(protocol, overrides)
        return {**self.process_class.job_namespace(code, stage), **self.extra_inputs(stage, species)}


MODELS: dict[str, Model] = {
    'gap': Model(
        name='gap', process_class=GapFitCalculation, restart_wrapper=GapFitBaseWorkChain,
        description='SOAP-GAP fitted by gap_fit (both papers).',
        validate=_gap_validate, member_inputs=_gap_member, extra_inputs=_gap_inputs),
    'nequip': Model(
        name='nequip', process_class=NequipTrainCalculation, restart_wrapper=NequipTrainBaseWorkChain,
        description='NequIP or Allegro (a nequip config) trained by nequip-train.',
        validate=_nequip_validate, member_inputs=_nequip_member, extra_inputs=_nequip_inputs,
        settings=('parameters', 'config')),
}


def fit_namespaces(spec) -> None:
    """Declare the loop's ``fit`` namespace on ``spec``: ``fit.model`` and one ``fit.<model>`` per registry entry
    (the job's inputs without its training set, which the loop gives)."""
    spec.input_namespace('fit', help='The fit of every iteration: `model` and the inputs of that model\'s job.')
    spec.input('fit.model', valid_type=orm.Str, default=lambda: orm.Str('gap'),
               help=f'Model family fitted each iteration: {", ".join(MODELS)} (allegro is a nequip config).')
    for model in MODELS.values():
        spec.expose_inputs(model.process_class, namespace=model.namespace, exclude=('training_set',),
                           namespace_options={'required': False, 'populate_defaults': False,
                                              'help': f'Inputs of the fit job for model `{model.name}`: '
                                                      f'{model.description}'})
    spec.input('fit.explorer', valid_type=orm.Dict, required=False,
               help='A cheaper fit of the same model on the same frames, used only to sample: `{port: value}` '
                    'replacing the fit job\'s settings (GAP: `parameters`; NequIP: `parameters`, `config`). '
                    'Selection, errors, the card and the output use the loop\'s own fit.')


def explorer_problem(model: Model, inputs: dict, starts: dict, loop: dict, first_count: int) -> str | None:
    """What is wrong with a loop's ``fit.explorer`` for ``model`` (None when it has none or it is sound)."""
    explorer = inputs.get('fit', {}).get('explorer')
    if explorer is None:
        return None
    settings = explorer.get_dict()
    allowed = model.settings
    unknown = sorted(set(settings) - set(allowed))
    if unknown or not settings:
        return (f'`fit.explorer` replaces inputs of the `{model.name}` fit job ({", ".join(allowed)}), e.g. '
                f"{{'parameters': {{...}}}}; got {sorted(settings) if settings else 'nothing'}")
    ports = model.process_class.spec().inputs
    for name, value in sorted(settings.items()):  # the job's own port validation, before any job
        invalid = ports[name].validate(orm.Dict(value))
        if invalid is not None:
            return f'`fit.explorer`: {invalid.message}'
    problem = model.validate(explorer_job_inputs(model.given_inputs(inputs), explorer), starts, loop, first_count)
    return f'`fit.explorer`: {problem}' if problem else None


def explorer_job_inputs(fit_inputs: dict, explorer: orm.Dict) -> dict:
    """The explorer's fit job inputs: the loop's fit with each port named in ``explorer`` replaced by its value."""
    return {**fit_inputs, **{port: orm.Dict(value) for port, value in explorer.get_dict().items()}}


def explorer_settings(model: Model, code, protocol: str, overrides: dict | None, species: list[str]) -> dict:
    """``fit.explorer`` from the fit job's ``protocol`` (``overrides`` merged): its model settings only."""
    inputs = model.namespace_inputs(code, protocol, overrides, species)
    return {port: inputs[port].get_dict() for port in model.settings if port in inputs}


def fit_model_name(inputs: dict) -> str:
    """The model family a loop's (validator's) ``inputs`` fit: ``fit.model``, by default ``gap``."""
    model = inputs.get('fit', {}).get('model')
    return model.value if model is not None else 'gap'


def get_model(name: str) -> Model:
    if name not in MODELS:
        raise ValueError(f'unknown model `{name}`; choose one of {", ".join(MODELS)}')
    return MODELS[name]
