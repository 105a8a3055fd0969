"""Potentials produced by the fitting stage. Every Potential gives an ASE calculator: the contract the
sampling, selection and benchmark stages rely on, whatever the model family."""

from __future__ import annotations

import hashlib
import re
import tempfile

from aiida import orm


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
        """A new quippy ``Potential`` (ASE calculator) reading this node's XML."""
        from quippy.potential import Potential as QuippyPotential

        return QuippyPotential(param_filename=_file_path(self))


_FILE_PATHS: dict[str, str] = {}


def _file_path(node: orm.SinglefileData) -> str:
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
            return nequip_calculator(_file_path(node), device=device, compiled=True)
        return nequip_calculator(_file_path(self), device=device)


#: Every Potential node type of the plugin: what the sampler, the loop and the benchmarks accept.
POTENTIAL_TYPES = (GapPotential, NequipPotential)
