"""``VaspLabelWorkChain``: label a batch of structures with VASP through aiida-vasp, with the minimalist paper's settings.

The minimalist paper (Sec. II.D): PAW, PBEsol, 500 eV plane-wave cutoff, Γ-centred k-meshes (3x3x3 for 40-atom BaTiO3 and
PbZrO3 and 24-atom HfO2, 2x2x2 for BiFeO3), Hubbard U = 4 eV on Fe, and the PAW valences listed below. Every
frame is one aiida-vasp ``VaspWorkChain`` (its handlers restart unconverged electronic steps); energies, forces
and stress are read from each calculation's retrieved ``vasprun.xml`` with ASE's reader (units and VASP's sign
convention handled there) by a calcfunction, so the TrainingSet has provenance back to each VaspCalculation.

VASP is licensed software: nothing here runs it. What can be checked without it — the INCAR, KPOINTS and POSCAR
that aiida-vasp's own writers produce from these inputs (:func:`input_files`), the refusal of a missing code or
POTCAR family, and the reading of vasprun.xml files — is tested.
"""

from __future__ import annotations

import io

from aiida import orm
from aiida.engine import calcfunction

from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.workflows.dft.per_frame import (
    PerFrameLabelWorkChain,
    called_calculations,
    explicit_kpoints,
    frame_problems,
    input_value,
    kpoints_distance_for,
    magnetic_setup,
)

#: The minimalist paper's PAW datasets, by valence: O 2s2p4 (6 e), Ba 5s5p6s (10), Ti 3s3p4s3d (12), Bi 5d6s6p (15),
#: Fe 3p3d4s (14), Pb 5d6s6p (14), Zr 4s4p5s4d (12), Hf 5p5d6s (10).
MINIMALIST_POTCARS = {'O': 'O', 'Ba': 'Ba_sv', 'Ti': 'Ti_sv', 'Bi': 'Bi_d', 'Fe': 'Fe_pv', 'Pb': 'Pb_d',
                   'Zr': 'Zr_sv', 'Hf': 'Hf_pv'}

#: The minimalist paper's INCAR for single-point labels (PBEsol = GGA PS; energies, forces and stress; no files kept).
MINIMALIST_INCAR = {'encut': 500, 'gga': 'PS', 'prec': 'Accurate', 'ediff': 1e-6, 'ismear': 0, 'sigma': 0.05,
                 'nelm': 150, 'lreal': False, 'ibrion': -1, 'nsw': 0, 'isif': 2, 'lwave': False, 'lcharg': False}

#: Hubbard U acts on the f shell of these elements (VASP LDAUL = 3) and on the d shell of any other.
_HUBBARD_SHELL = {'f': {'Ce', 'Pr', 'Nd', 'Sm', 'Eu', 'Gd', 'Tb', 'Dy', 'Ho', 'Er', 'Tm', 'Yb'}}


def vasp_input_problems(inputs, structures) -> str | None:
    """Why ``structures`` cannot be labelled with the VASP ``inputs``: no code, no POTCAR family, magnetism..."""
    from aiida_vasp.data.potcar import PotcarData

    if not structures:
        return 'no structures were given to label'
    problems = []
    code = inputs.get('code') if hasattr(inputs, 'get') else None
    if code is None:
        problems.append('no VASP code: set one up with `verdi code create core.code.installed --label vasp '
                        '--default-calc-job-plugin vasp.vasp --filepath-executable /path/to/vasp_std ...` and pass it '
                        'as `code`')
    family = input_value(inputs, 'potential_family', None)
    mapping = input_value(inputs, 'potential_mapping', MINIMALIST_POTCARS) or {}
    frame_issues, symbols = frame_problems(inputs, structures)
    problems += frame_issues
    unmapped = sorted(symbols - set(mapping))
    if unmapped:
        problems.append(f'no POTCAR chosen for {", ".join(unmapped)}: add them to `potential_mapping`')
    if not family:
        problems.append('no POTCAR family: upload VASP\'s PBE PAW set (licensed, not shipped) with `verdi data '
                        'vasp-potcar uploadfamily --path <potpaw_PBE.54> --name PBE.54` and pass '
                        "`potential_family: 'PBE.54'`")
    elif PotcarData.get_potcar_group(family) is None:
        problems.append(f'POTCAR family `{family}` is not installed: upload it with `verdi data vasp-potcar '
                        f'uploadfamily --path <directory of POTCARs> --name {family}`')
    return '\n'.join(problems) if problems else None


def validate_inputs(inputs, namespace):
    if 'structures' not in namespace:
        return None
    return vasp_input_problems(inputs, inputs.get('structures', {}))


def gamma_mesh(structure: orm.StructureData, kpoints_distance: float) -> orm.KpointsData:
    """Γ-centred mesh with at most ``kpoints_distance`` (Å⁻¹, 2π included) between k-points."""
    kpoints = orm.KpointsData()
    kpoints.set_cell_from_structure(structure)
    kpoints.set_kpoints_mesh_from_density(kpoints_distance)
    mesh, _ = kpoints.get_kpoints_mesh()
    gamma = orm.KpointsData()
    gamma.set_cell_from_structure(structure)
    gamma.set_kpoints_mesh(mesh, offset=[0, 0, 0])
    return gamma


@calcfunction
def sites_grouped_by_kind(structure: orm.StructureData) -> orm.StructureData:
    """``structure`` with its sites grouped by kind (kinds in order of first appearance, sites in order within)."""
    names = [site.kind_name for site in structure.sites]
    first = {name: names.index(name) for name in names}
    result = orm.StructureData(cell=structure.cell, pbc=structure.pbc)
    for kind in structure.kinds:
        result.append_kind(kind)
    for index in sorted(range(len(names)), key=lambda i: (first[names[i]], i)):
        result.append_site(structure.sites[index])
    return result


def grouped_by_kind(structure: orm.StructureData) -> orm.StructureData:
    """aiida-vasp writes one POSCAR block (and POTCAR) per run of equal kinds in site order: an interleaved
    40-atom cell becomes 24 blocks, and VASP's per-species tags (LDAU*, LANGEVIN_GAMMA) and machine-learning
    types would follow those blocks. Grouped sites give one block per kind (through a calcfunction, so the
    reordering has provenance); an already grouped structure is returned as it is."""
    names = [site.kind_name for site in structure.sites]
    blocks = 1 + sum(a != b for a, b in zip(names, names[1:]))
    return structure if blocks == len(set(names)) else sites_grouped_by_kind(structure)


def vasp_inputs(inputs, structure: orm.StructureData) -> dict:
    """The ``VaspWorkChain`` inputs that label ``structure`` (INCAR with U and MAGMOM already in site order)."""
    from aiida_vasp.utils.ldau import get_ldau_keys

    incar = {**MINIMALIST_INCAR, **{k.lower(): v for k, v in (input_value(inputs, 'incar', {}) or {}).items()}}
    structure, moments = magnetic_setup(inputs, structure)
    structure = grouped_by_kind(structure)
    if moments is not None:
        incar['ispin'] = 2
        incar['magmom'] = [moments[site.kind_name] for site in structure.sites]
    hubbard = input_value(inputs, 'hubbard_u', {}) or {}
    u_mapping = {kind.name: ['f' if kind.symbol in _HUBBARD_SHELL['f'] else 'd', float(hubbard[kind.symbol])]
                 for kind in structure.kinds if kind.symbol in hubbard}
    if u_mapping:
        incar.update({'ldau': True, **get_ldau_keys(structure, u_mapping)})
    mapping = input_value(inputs, 'potential_mapping', MINIMALIST_POTCARS) or MINIMALIST_POTCARS
    result = {
        'structure': structure,
        'parameters': orm.Dict({'incar': incar}),
        'kpoints': explicit_kpoints(inputs, structure) or gamma_mesh(
            structure, kpoints_distance_for(inputs, structure) or float(input_value(inputs, 'kpoints_distance', 0.3))),
        'potential_family': orm.Str(input_value(inputs, 'potential_family', '')),
        'potential_mapping': orm.Dict({kind.name: mapping[kind.symbol] for kind in structure.kinds}),
        'settings': orm.Dict({'parser_settings': {'include_quantity': ['forces', 'stress']}}),
    }
    if inputs.get('code') is not None:
        result['code'] = inputs['code']
    options = input_value(inputs, 'options', None)
    if options:
        result['calc'] = {'metadata': {'options': options}}
    return result


def input_files(inputs: dict) -> dict[str, str]:
    """INCAR, KPOINTS and POSCAR as aiida-vasp's own writers produce them from :func:`vasp_inputs` (no POTCAR:
    that needs the licensed files)."""
    import tempfile

    from aiida_vasp.parsers.content_parsers.incar import IncarParser
    from aiida_vasp.parsers.content_parsers.kpoints import KpointsParser
    from aiida_vasp.parsers.content_parsers.poscar import PoscarParser

    files = {}
    settings = inputs['settings'].get_dict() if 'settings' in inputs else {}
    validate = not settings.get('skip_parameters_validation', False)  # as aiida-vasp's own INCAR writer decides
    with tempfile.TemporaryDirectory() as directory:
        for name, parser in (('INCAR', IncarParser(data=orm.Dict(inputs['parameters']['incar']),
                                                   validate_tags=validate)),
                             ('KPOINTS', KpointsParser(data=inputs['kpoints'])),
                             ('POSCAR', PoscarParser(data=inputs['structure'], precision=10))):
            path = f'{directory}/{name}'
            parser.write(path)
            with open(path) as handle:
                files[name] = handle.read()
    return files


@calcfunction
def training_set_from_vasp(frames: orm.Dict, **retrieved) -> TrainingSet:
    """One TrainingSet from the retrieved folders (``retrieved_<i>``) of converged VaspCalculations.

    The last ionic step of each ``vasprun.xml`` is read with ASE's reader, which converts VASP's kB and stress
    sign to ASE's convention; the energy is the free energy, the one the forces are derivatives of.
    """
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import read

    meta = frames.get_dict()
    atoms_list, origins = [], []
    for index, key in enumerate(meta['keys']):
        folder = retrieved[f'retrieved_{index}']
        atoms = read(io.StringIO(folder.get_object_content('vasprun.xml')), index=-1, format='vasp-xml')
        stress = atoms.calc.results.get('stress')
        labelled = atoms.copy()
        labelled.calc = SinglePointCalculator(labelled, energy=atoms.get_potential_energy(force_consistent=True),
                                              forces=atoms.get_forces(), stress=stress)
        atoms_list.append(labelled)
        origins.append({'labeller': 'vasp', 'frame_key': key, 'process_uuid': folder.creator.uuid if folder.creator else None,
                        'structure_uuid': meta['structure_uuids'][index]})
    return TrainingSet(frames=atoms_list, origins=origins)


def define_vasp_ports(spec) -> None:
    """The ports every VASP work chain of the plugin has: code (optional, so its absence is explained by the
    validator rather than by a bare 'required'), POTCAR family and mapping."""
    spec.input('code', valid_type=orm.AbstractCode, required=False, help='A `vasp.vasp` code (VASP >= 6.3 for ML).')
    spec.input('potential_family', valid_type=orm.Str, required=False,
               help='aiida-vasp POTCAR family (VASP\'s PAW set is licensed: upload your own).')
    spec.input('potential_mapping', valid_type=orm.Dict, default=lambda: orm.Dict(MINIMALIST_POTCARS),
               help='POTCAR per element (default: the minimalist paper\'s valences).')


class VaspLabelWorkChain(PerFrameLabelWorkChain):
    """Label structures with VASP (one aiida-vasp ``VaspWorkChain`` each) and return one TrainingSet."""

    _PROGRAM = 'VASP'
    training_set_function = training_set_from_vasp

    @classmethod
    def define(cls, spec):
        super().define(spec)
        define_vasp_ports(spec)
        spec.input('incar', valid_type=orm.Dict, required=False, help='INCAR tags over the minimalist paper\'s.')
        spec.input('kpoints_distance', valid_type=orm.Float, default=lambda: orm.Float(0.3),
                   help='Γ-centred mesh density, Å⁻¹ with 2π (0.3: 3x3x3 on a 40-atom perovskite).')
        spec.inputs.validator = validate_inputs

    def frame_builder(self, structure):
        from aiida.plugins import WorkflowFactory

        process = WorkflowFactory('vasp.vasp')
        builder = process.get_builder()
        for key, value in vasp_inputs(self.inputs, structure).items():
            builder[key] = value
        return builder

    @staticmethod
    def label_sources(node):
        calculations = called_calculations(node)
        if not calculations or 'retrieved' not in calculations[-1].outputs:
            return None
        return {'retrieved': calculations[-1].outputs.retrieved}

    @staticmethod
    def frame_cost(node):
        calculations = called_calculations(node)
        return {'vasp_pks': [c.pk for c in calculations], 'restarts': max(len(calculations) - 1, 0),
                'wall_time_s': _elapsed(calculations)}


def _elapsed(calculations) -> float | None:
    """Wall time of the runs (scheduler start to end as recorded by AiiDA), summed."""
    total = 0.0
    for calc in calculations:
        total += (calc.mtime - calc.ctime).total_seconds()
    return total if calculations else None
