"""Labelling DFT one frame at a time: per-frame base, Quantum ESPRESSO, VASP (and its on-the-fly mode), Berry phases."""
