"""Structure builders (polymorphs, supercells) and order parameters: plain ASE/numpy, no AiiDA imports."""

from __future__ import annotations

import re

from ase import Atoms

from .fluorites import hfo2_polymorphs
from .perovskites import (BATIO3_PHASES, batio3_polymorphs, bifeo3_polymorphs, dipole_texture, glazer_perovskite,
                          check_kind, pbzro3_polymorphs, perovskite_polymorph, switching_endpoints)
from .perturb import rattled_strained


def _batio3(kind: str = 'ranking') -> dict[str, Atoms]:
    check_kind(kind)
    # The BaTiO3-GAP paper samples all four phases in 40-atom cells; the ranking uses the 5-atom cells.
    return batio3_polymorphs(supercell=(2, 2, 2) if kind == 'training' else (1, 1, 1))


#: The materials a user can name: their polymorph builders (``kind`` 'training' or 'ranking').
MATERIALS = {'BaTiO3': _batio3, 'BiFeO3': bifeo3_polymorphs, 'PbZrO3': pbzro3_polymorphs, 'HfO2': hfo2_polymorphs}

#: The minimalist-MLIP paper's training stages per material, in order: the first polymorph starts the training set,
#: each next one continues it (BaTiO3 once, from R3m). The loop's ``stages: minimalist`` and the VASP on-the-fly
#: work chain both read this.
MINIMALIST_STAGES = {'BaTiO3': ['R3m'], 'PbZrO3': ['R3c', 'Pnma'], 'BiFeO3': ['R3c', 'Pnma'],
                     'HfO2': ['P2_1/c', 'P4_2/nmc']}

#: The phase each material's ranking is measured from (minimalist paper, Tables I-II; cubic for BaTiO3).
RANKING_ZERO = {'BaTiO3': 'Pm-3m', 'BiFeO3': 'R3c', 'PbZrO3': 'AFE40', 'HfO2': 'monoclinic'}


def polymorphs(material: str, kind: str = 'ranking') -> dict[str, Atoms]:
    """A named material's polymorphs: ``training`` (the start structures of the papers' MD, 40-atom perovskite /
    24-atom HfO2 cells) or ``ranking`` (the phases of the minimalist paper's energy tables, in their own cells)."""
    if material not in MATERIALS:
        raise ValueError(f'unknown material `{material}`; known: {", ".join(MATERIALS)}')
    return MATERIALS[material](kind)


def port_name(phase: str) -> str:
    """A phase name as an AiiDA port name: 'P4_2/nmc' -> 'P4_2_nmc', 'Pm-3m' -> 'Pm_3m'."""
    return re.sub(r'\W', '_', phase)


__all__ = ('BATIO3_PHASES', 'MATERIALS', 'MINIMALIST_STAGES', 'RANKING_ZERO', 'batio3_polymorphs', 'bifeo3_polymorphs', 'dipole_texture',
           'glazer_perovskite', 'hfo2_polymorphs', 'pbzro3_polymorphs', 'perovskite_polymorph', 'polymorphs',
           'port_name', 'rattled_strained', 'switching_endpoints')
