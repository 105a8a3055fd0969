"""Data types of aiida-ferromlip."""

from .training_set import TrainingSet, merge_training_sets, training_set_from_extxyz

__all__ = ('TrainingSet', 'merge_training_sets', 'training_set_from_extxyz')
