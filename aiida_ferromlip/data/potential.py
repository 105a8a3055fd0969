"""Potentials produced by the fitting stage. Every Potential gives an ASE calculator: the contract the
sampling, selection and benchmark stages rely on, whatever the model family."""

from __future__ import annotations

import hashlib
import re
import tempfile

from aiida import orm
from aiida.engine import calcfunction


class Potential:
    """Interface of every potential node: ``species`` and an ASE ``calculator()``."""

    @property
    def species(self) -> list[str]:
        return list(self.base.attributes.get('species', []))

    @property
    def gives_stress(self) -> bool:
        return bool(self.base.attributes.get('gives_stress', True))

    def calculator(self):  # pragma: no cover - interface
        raise NotImplementedError

    def job_files(self) -> tuple[dict, dict[str, bytes]]:  # pragma: no cover - interface
        """``(spec, {filename: content})`` a job needs to rebuild the calculator with
        ``aiida_ferromlip.engines.potentials.calculator_from_spec``."""
        raise NotImplementedError


class GapPotential(Potential, orm.SinglefileData):
    """A GAP as the single XML file gap_fit writes with ``sparse_separate_file=F``, plus its metadata.

    Attributes: ``species``, ``cutoff`` (largest descriptor cutoff, Å), ``descriptors`` (as fitted),
    ``default_sigma``, ``sparse_points`` (per descriptor), ``training_set_uuid``, ``content_hash``.
    """

    DEFAULT_FILENAME = 'gap.xml'

    @classmethod
    def content_hash_of(cls, xml_text: str) -> str:
        """SHA-256 of the XML with gap_fit's timestamp label normalised, so identical fits hash equal."""
        labels = set(re.findall(r'GAP_\d{4}_\d+_\d+_\d+_\d+_\d+_\d+_\d+', xml_text))
        for label in sorted(labels, key=len, reverse=True):
            xml_text = xml_text.replace(label, 'GAP_LABEL')
        xml_text = re.sub(r'GAP_LABEL\d*', 'GAP_LABEL', xml_text)
        return hashlib.sha256(xml_text.encode()).hexdigest()

    @property
    def content_hash(self) -> str:
        return self.base.attributes.get('content_hash')

    def job_files(self) -> tuple[dict, dict[str, bytes]]:
        return {'kind': 'gap', 'file': 'potential.xml'}, {'potential.xml': self.get_content('rb')}

    def calculator(self):
        """A new quippy ``Potential`` (ASE calculator) reading this node's XML, energy, forces and stress in one call
        (``engines.potentials.gap_calculator``)."""
        from aiida_ferromlip.engines.potentials import gap_calculator

        return gap_calculator(file_path(self))


_FILE_PATHS: dict[str, str] = {}


def file_path(node: orm.SinglefileData) -> str:
    """quippy and nequip read from a path: copy the file out of the repository once per stored node."""
    import os

    key = node.uuid if node.is_stored else None
    if key in _FILE_PATHS and os.path.exists(_FILE_PATHS[key]):
        return _FILE_PATHS[key]
    path = os.path.join(tempfile.mkdtemp(prefix='ferromlip-potential-'), node.filename)
    with open(path, 'wb') as handle:
        handle.write(node.get_content('rb'))
    if key is not None:
        _FILE_PATHS[key] = path
    return path


class NequipPotential(Potential, orm.SinglefileData):
    """An Allegro or NequIP model as the portable archive ``nequip-package`` writes (``.nequip.zip``: the model's
    code and weights), plus its metadata.

    Attributes: ``species``, ``family`` (allegro | nequip), ``cutoff`` (Å), ``training_set_uuid``,
    ``num_train_frames``, ``compiled_model_uuid`` (the AOTInductor build of the same job, when one was made).
    Anyone with the same nequip/allegro versions runs the archive anywhere, on CPU or GPU; the compiled build is
    faster but tied to the machine type and torch version it was compiled for.
    """

    DEFAULT_FILENAME = 'model.nequip.zip'

    def job_files(self) -> tuple[dict, dict[str, bytes]]:
        return {'kind': 'nequip', 'file': self.DEFAULT_FILENAME}, {self.DEFAULT_FILENAME: self.get_content('rb')}

    def calculator(self, device: str = 'cpu', compiled: bool = False):
        """A ``NequIPCalculator`` for this model; ``compiled=True`` loads the AOTInductor build instead."""
        from aiida_ferromlip.engines.potentials import nequip_calculator

        if compiled:
            uuid = self.base.attributes.get('compiled_model_uuid', None)
            if uuid is None:
                raise ValueError(f'{self.__class__.__name__}<{self.pk}> has no compiled build: train with '
                                 "`compile: aotinductor`, or use the portable archive (compiled=False)")
            node = orm.load_node(uuid)
            return nequip_calculator(file_path(node), device=device, compiled=True)
        return nequip_calculator(file_path(self), device=device)


class CommitteePotential(Potential, orm.FolderData):
    """Several potentials of one family fitted to the same data with different seeds (and, for GAP, different
    training subsets and sparse points): the mean prediction and how much the members disagree
    (``engines.potentials.CommitteeCalculator``). The uncertainty selectors of the loop score candidates with it.

    The members' files are copied into this node (``member_00_<file>`` ...: flat, as job folders take them); attributes ``species``, ``cutoff``,
    ``gives_stress`` (all members must), ``member_uuids`` (the fitted nodes, in order: member 0 is the potential
    the loop samples with) and ``member_specs``. Made by the ``committee_of`` calcfunction.
    """

    @property
    def member_uuids(self) -> list[str]:
        return list(self.base.attributes.get('member_uuids', []))

    @property
    def size(self) -> int:
        return len(self.member_uuids)

    def job_files(self) -> tuple[dict, dict[str, bytes]]:
        specs, files = [], {}
        for spec in self.base.attributes.get('member_specs'):
            files[spec['file']] = self.base.repository.get_object_content(spec['file'], mode='rb')
            specs.append(dict(spec))
        return {'kind': 'committee', 'members': specs}, files

    def calculator(self):
        """The committee's ASE calculator, its members read from this node's files."""
        import os

        from aiida_ferromlip.engines.potentials import calculator_from_spec

        directory = tempfile.mkdtemp(prefix='ferromlip-committee-')
        spec, files = self.job_files()
        for name, content in files.items():
            os.makedirs(os.path.join(directory, os.path.dirname(name)), exist_ok=True)
            with open(os.path.join(directory, name), 'wb') as handle:
                handle.write(content)
        members = [{**member, 'file': os.path.join(directory, member['file'])} for member in spec['members']]
        return calculator_from_spec({'kind': 'committee', 'members': members})


def committee_node(members: list) -> CommitteePotential:
    """A new (unstored) CommitteePotential holding copies of ``members`` (stored Potential nodes, at least two, of
    one family and the same species)."""
    import io

    if len(members) < 2:
        raise ValueError(f'a committee needs at least two members, got {len(members)}')
    if len({type(member) for member in members}) > 1:
        raise ValueError(f'committee members must be of one family, got {sorted({type(m).__name__ for m in members})}')
    if isinstance(members[0], CommitteePotential):
        raise ValueError('a committee cannot hold committees')
    species = [sorted(member.species) for member in members]
    if any(s != species[0] for s in species):
        raise ValueError(f'committee members must know the same species, got {species}')
    committee = CommitteePotential()
    specs = []
    for index, member in enumerate(members):
        spec, files = member.job_files()
        for name, content in files.items():
            committee.base.repository.put_object_from_filelike(io.BytesIO(content), f'member_{index:02d}_{name}')
        specs.append({**spec, 'file': f'member_{index:02d}_{spec["file"]}'})
    committee.base.attributes.set_many({
        'species': species[0], 'cutoff': max(float(m.base.attributes.get('cutoff', 0.0)) for m in members),
        'gives_stress': all(m.gives_stress for m in members), 'member_uuids': [m.uuid for m in members],
        'member_specs': specs, 'family': type(members[0]).__name__})
    return committee


#: Every Potential node type of the plugin: what the sampler, the loop and the benchmarks accept.
POTENTIAL_TYPES = (GapPotential, NequipPotential, CommitteePotential)


@calcfunction
def committee_of(**members: orm.Data) -> CommitteePotential:
    """The committee of ``members`` (keys sort into member order: member 0 first)."""
    return committee_node([members[key] for key in sorted(members)])
