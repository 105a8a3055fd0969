"""Structure builders (polymorphs, supercells) and order parameters: plain ASE/numpy, no AiiDA imports."""

from .perovskites import BATIO3_PHASES, batio3_polymorphs, perovskite_polymorph
from .perturb import rattled_strained

__all__ = ("BATIO3_PHASES", "batio3_polymorphs", "perovskite_polymorph", "rattled_strained")
