"""Structure builders (polymorphs, supercells) and order parameters: plain ASE/numpy, no AiiDA imports."""

from .perovskites import BATIO3_PHASES, batio3_polymorphs, perovskite_polymorph

__all__ = ('BATIO3_PHASES', 'batio3_polymorphs', 'perovskite_polymorph')
