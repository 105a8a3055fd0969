"""``NequipTrainCalculation``: train an Allegro or NequIP model on a TrainingSet with nequip-train.

The Hydra config is generated from the protocol on the AiiDA side (:func:`nequip_config`) and is an input node,
so what was trained is queryable and any part of it can be overridden. The minimalist paper trained Allegro on exactly the
data gathered for its GAP: the same TrainingSet and the same train/validation split (``training_split``) as
``GapFitCalculation`` make the two directly comparable.
"""

from __future__ import annotations

import json

import numpy as np
import yaml
from aiida import orm
from aiida_quantumespresso.workflows.protocols.utils import recursive_merge

from aiida_ferromlip.calculations.base import FerromlipCalcJob
from aiida_ferromlip.calculations.gap_fit import shortest_cell_height, training_split
from aiida_ferromlip.data.potential import NequipPotential
from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.engines import nequip_train as engine
from aiida_ferromlip.exit_codes import declare

FAMILIES = ('allegro', 'nequip')


def _model_section(model: dict, species: list[str]) -> dict:
    common = {'seed': '${seed}', 'model_dtype': model.get('model_dtype', 'float32'), 'type_names': species,
              'r_max': float(model['cutoff']), 'l_max': int(model['l_max']), 'parity': bool(model['parity']),
              'num_layers': int(model['num_layers']),
              'avg_num_neighbors': '${training_data_stats:num_neighbors_mean}',
              'per_type_energy_shifts': '${training_data_stats:per_atom_energy_mean}',
              'per_type_energy_scales': '${training_data_stats:forces_rms}'}
    width, depth = int(model['mlp_width']), int(model['mlp_depth'])
    if model['family'] == 'allegro':
        return {'_target_': 'allegro.model.AllegroModel', **common,
                'radial_chemical_embed': {'_target_': 'allegro.nn.TwoBodyBesselScalarEmbed',
                                          'num_bessels': int(model['num_bessels']),
                                          'polynomial_cutoff_p': int(model['polynomial_cutoff_p'])},
                'num_scalar_features': int(model['num_scalar_features']),
                'num_tensor_features': int(model['num_tensor_features']),
                'scalar_embed_mlp_hidden_layers_depth': depth, 'scalar_embed_mlp_hidden_layers_width': width,
                'allegro_mlp_hidden_layers_depth': depth, 'allegro_mlp_hidden_layers_width': width,
                'readout_mlp_hidden_layers_depth': depth, 'readout_mlp_hidden_layers_width': width}
    return {'_target_': 'nequip.model.NequIPGNNModel', **common, 'num_features': int(model['num_features']),
            'num_bessels': int(model['num_bessels']), 'polynomial_cutoff_p': int(model['polynomial_cutoff_p']),
            'radial_mlp_depth': depth, 'radial_mlp_width': width}


def nequip_config(model: dict, training: dict, species: list[str], seed: int = 0) -> dict:
    """The nequip-train Hydra config for ``model``/``training`` (the protocol sections) and ``species``."""
    if model.get('family') not in FAMILIES:
        raise ValueError(f'unknown model family `{model.get("family")}`; choose one of {", ".join(FAMILIES)}')
    species = sorted(species)
    loader = {'_target_': 'torch.utils.data.DataLoader', 'batch_size': int(training['batch_size'])}
    coefficients = dict(training['loss_coefficients'])
    return {
        'run': ['train', 'val'],
        'seed': int(seed),
        'cutoff_radius': float(model['cutoff']),
        'model_type_names': species,
        'data': {
            '_target_': 'nequip.data.datamodule.ASEDataModule',
            'seed': '${seed}',
            'train_file_path': engine.TRAIN_FILE,
            'val_file_path': engine.VALIDATION_FILE,
            'transforms': [
                {'_target_': 'nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper',
                 'model_type_names': '${model_type_names}',
                 'chemical_species_to_atom_type_map': {s: s for s in species}},
                {'_target_': 'nequip.data.transforms.NeighborListTransform', 'r_max': '${cutoff_radius}'},
            ],
            'train_dataloader': {**loader, 'shuffle': True},
            'val_dataloader': loader,
            'stats_manager': {'_target_': 'nequip.data.CommonDataStatisticsManager',
                              'type_names': '${model_type_names}'},
        },
        'trainer': {
            '_target_': 'lightning.Trainer',
            'max_epochs': int(training['max_epochs']),
            'check_val_every_n_epoch': 1,
            'log_every_n_steps': 1,
            'enable_progress_bar': False,
            'logger': {'_target_': 'lightning.pytorch.loggers.CSVLogger', 'save_dir': '${hydra:runtime.output_dir}',
                       'name': 'log'},
            'callbacks': [
                {'_target_': 'lightning.pytorch.callbacks.ModelCheckpoint', 'monitor': 'val0_epoch/weighted_sum',
                 'dirpath': '${hydra:runtime.output_dir}', 'filename': 'best', 'save_top_k': 1},
                {'_target_': 'lightning.pytorch.callbacks.LearningRateMonitor', 'logging_interval': 'epoch'},
                {'_target_': 'aiida_ferromlip.engines.nequip_callbacks.StopBelowLearningRate',
                 'min_lr': float(training['min_learning_rate'])},
            ],
        },
        'training_module': {
            '_target_': 'nequip.train.EMALightningModule',
            'loss': {'_target_': 'nequip.train.EnergyForceStressLoss', 'per_atom_energy': True,
                     'coeffs': coefficients},
            'val_metrics': {'_target_': 'nequip.train.EnergyForceStressMetrics',
                            'coeffs': {'total_energy_mae': 1.0, 'forces_mae': 1.0, 'stress_mae': 1.0}},
            'optimizer': {'_target_': 'torch.optim.Adam', 'lr': float(training['learning_rate'])},
            'lr_scheduler': {
                'scheduler': {'_target_': 'torch.optim.lr_scheduler.ReduceLROnPlateau',
                              'factor': float(training['plateau_factor']),
                              'patience': int(training['plateau_patience'])},
                'monitor': 'val0_epoch/weighted_sum', 'interval': 'epoch', 'frequency': 1},
            'model': _model_section(model, species),
        },
    }


def validate_inputs(inputs, _):
    """Fail before the job: too few frames for the split, species the config lacks, a cutoff the cells can't hold."""
    if 'training_set' not in inputs or 'config' not in inputs:
        return None
    training_set, config = inputs['training_set'], inputs['config'].get_dict()
    parameters = inputs['parameters'].get_dict() if 'parameters' in inputs else {}
    train, validation = training_split(training_set, parameters)
    if len(train) < 1 or len(validation) < 1:
        return (f'the TrainingSet has {len(training_set)} frame(s): the {parameters.get("validation_fraction", 0.1)} '
                f'validation split needs at least one training and one validation frame')
    model_species = set(config.get('model_type_names', []))
    missing = sorted(set(training_set.species) - model_species)
    if missing:
        return f'the config has no atom type for {", ".join(missing)} (model_type_names: {sorted(model_species)})'
    # The neighbour lists handle periodic images at any cutoff; what changes physics is an atom meeting its own
    # image, i.e. a cutoff beyond the shortest cell height: refused unless asked for (the minimalist paper did: 8 Å on 40-atom
    # cells, see the `minimalist` protocol).
    cutoff = float(config.get('cutoff_radius', 0.0))
    height = shortest_cell_height(training_set)
    if cutoff > height and not parameters.get('allow_large_cutoff', False):
        return (f'the cutoff {cutoff} Å exceeds the shortest cell height ({height:.2f} Å): atoms see their own '
                f'periodic images. Use larger cells, or set `allow_large_cutoff: true` if intended.')
    return None


def nequip_frames(training_set: TrainingSet, indices) -> list:
    """Frames as nequip's ASE dataset reads them: energy, forces and (when labelled) stress on a calculator."""
    frames = training_set.get_frames([int(i) for i in indices])
    for atoms in frames:
        atoms.info.clear()
    return frames


class NequipTrainCalculation(FerromlipCalcJob):
    """Train an Allegro/NequIP model (nequip-train), package and compile it, and validate it on held-out frames."""

    _PARSER = 'ferromlip.nequip_train'
    _OUTPUT_FILENAME = 'ferromlip-nequip.out'
    _PROTOCOL_FILE = 'nequip.yaml'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('training_set', valid_type=TrainingSet, help='Labelled frames to train on.')
        spec.input('config', valid_type=orm.Dict,
                   help='The nequip-train Hydra config (generated from the protocol by get_builder_from_protocol).')
        spec.input('parameters', valid_type=orm.Dict,
                   help='validation_fraction, seed, compile (aotinductor | none), device (auto | cpu | cuda), '
                        'allow_large_cutoff.')
        spec.inputs.validator = validate_inputs

        spec.output('potential', valid_type=NequipPotential, help='The packaged model (portable .nequip.zip).')
        spec.output('compiled_model', valid_type=orm.SinglefileData, required=False,
                    help='AOTInductor build for this kind of machine (.nequip.pt2).')
        spec.output('metrics', valid_type=orm.Dict, required=False,
                    help='Validation RMSE/MAE: energy (meV/f.u., meV/atom), forces (meV/Å), stress (kbar).')
        spec.output('parity_plot', valid_type=orm.SinglefileData, required=False, help='Parity plot (PNG).')
        spec.output('learning_curve', valid_type=orm.ArrayData, required=False,
                    help='Training and validation loss (and learning rate) per epoch.')
        spec.output('learning_curve_plot', valid_type=orm.SinglefileData, required=False, help='Loss per epoch (PNG).')
        spec.output('train_report', valid_type=orm.Dict, help='Device, epochs, wall times of train/package/compile.')

        declare(spec, 'ERROR_NAN_LOSS', 'ERROR_TRAINING_FAILED', 'ERROR_COMPILE_FAILED')

    @classmethod
    def get_builder_from_protocol(cls, code: orm.AbstractCode, training_set: TrainingSet,
                                  protocol: str | None = None, overrides: dict | None = None, *, options=None):
        """Builder for ``training_set`` with ``protocol`` (fast | minimalist | minimalist_nequip).

        ``overrides`` may hold ``parameters``, ``model``, ``training`` (merged into the protocol's sections before
        the config is generated) and ``config`` (merged into the generated config). Nothing is mutated.
        """
        overrides = dict(overrides or {})
        config_overrides = overrides.pop('config', {})
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.builder_from_protocol(code, {'training_set': training_set}, protocol, overrides, options=options)
        config = nequip_config(inputs['model'], inputs['training'], training_set.species,
                               seed=inputs['parameters'].get('seed', 0))
        builder.config = orm.Dict(recursive_merge(config, config_overrides))
        return builder

    def prepare_for_submission(self, folder):
        from ase.io import write

        parameters = self.inputs.parameters.get_dict()
        train, validation = training_split(self.inputs.training_set, parameters)
        for name, indices in ((engine.TRAIN_FILE, train), (engine.VALIDATION_FILE, validation)):
            with folder.open(name, 'w') as handle:
                write(handle, nequip_frames(self.inputs.training_set, indices), format='extxyz')
        with folder.open(engine.CONFIG_FILE, 'w') as handle:
            yaml.safe_dump(self.inputs.config.get_dict(), handle, sort_keys=False)
        with folder.open(engine.PARAMETERS_FILE, 'w') as handle:
            json.dump({**parameters, 'num_train': int(np.size(train))}, handle, indent=1)
        return self.calcinfo([], [engine.PACKAGE_FILE, engine.COMPILED_FILE, engine.PREDICTIONS_FILE,
                                  engine.LOSS_FILE, engine.REPORT_FILE, engine.TRAIN_LOG])
