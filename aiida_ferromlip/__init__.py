"""aiida-ferromlip: provenance-tracked machine-learned interatomic potentials for ferroelectric oxides."""

__version__ = '0.1.0'
