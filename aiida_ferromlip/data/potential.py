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

        return QuippyPotential(param_filename=_xml_path(self))


_XML_PATHS: dict[str, str] = {}


def _xml_path(node: GapPotential) -> str:
    """quippy reads from a path: copy the XML out of the repository once per stored node."""
    import os

    key = node.uuid if node.is_stored else None
    if key in _XML_PATHS and os.path.exists(_XML_PATHS[key]):
        return _XML_PATHS[key]
    path = os.path.join(tempfile.mkdtemp(prefix='ferromlip-gap-'), node.filename)
    with open(path, 'w') as handle:
        handle.write(node.get_content())
    if key is not None:
        _XML_PATHS[key] = path
    return path
