"""What every CalcJob of the plugin shares: option defaults, the missing-output exit code, protocol lookup,
and the CodeInfo/CalcInfo of a single-program job."""

from __future__ import annotations

import pathlib

from aiida import orm
from aiida.common import datastructures
from aiida.engine import CalcJob
from aiida_quantumespresso.workflows.protocols.utils import ProtocolMixin as QeProtocolMixin

from aiida_ferromlip.exit_codes import declare
from aiida_ferromlip.protocols import PROTOCOLS, protocol_name


class ProtocolMixin(QeProtocolMixin):
    """aiida-quantumespresso's protocol reader (same YAML layout, same override rules), which also takes the old
    names of renamed protocols (``protocols.RENAMED_PROTOCOLS``) with a deprecation warning."""

    @classmethod
    def get_protocol_inputs(cls, protocol=None, overrides=None):
        return super().get_protocol_inputs(protocol_name(protocol), overrides)


class FerromlipCalcJob(ProtocolMixin, CalcJob):
    """Base of the plugin's CalcJobs; subclasses set the class attributes below."""

    _abstract = True  # no entry point: only its subclasses are plugins

    _PARSER: str = ''
    _OUTPUT_FILENAME: str = ''
    _PROTOCOL_FILE: str | None = None  # a YAML in aiida_ferromlip/protocols/

    @classmethod
    def define(cls, spec):
        super().define(spec)
        options = spec.inputs['metadata']['options']
        options['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        options['parser_name'].default = cls._PARSER
        options['withmpi'].default = False
        options['output_filename'].default = cls._OUTPUT_FILENAME
        declare(spec, 'ERROR_OUTPUT_MISSING')

    @classmethod
    def get_protocol_filepath(cls) -> pathlib.Path:
        return PROTOCOLS / cls._PROTOCOL_FILE

    @classmethod
    def builder_from_protocol(cls, code, nodes: dict, protocol=None, overrides=None, *, options=None):
        """Builder with ``nodes`` (port -> node), the protocol's ``parameters`` Dict and its options merged with
        ``options``; ``overrides`` are merged into a copy of the protocol (``ProtocolMixin``)."""
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        builder.code = code
        for port, node in nodes.items():
            builder[port] = node
        builder.parameters = orm.Dict(inputs['parameters'])
        builder.metadata.options = {**inputs.get('metadata', {}).get('options', {}), **(options or {})}
        return builder

    @staticmethod
    def job_namespace(code, stage: dict) -> dict:
        """A work chain's exposed namespace of this job from its resolved protocol inputs ``stage``
        (``get_protocol_inputs``): the code, the ``parameters`` Dict and the protocol's options."""
        return {'code': code, 'parameters': orm.Dict(stage['parameters']),
                'metadata': {'options': stage['metadata']['options']}}

    def calcinfo(self, cmdline: list[str], retrieve: list[str]) -> datastructures.CalcInfo:
        """CalcInfo running this job's code once with ``cmdline``; retrieves ``retrieve`` and its stdout."""
        codeinfo = datastructures.CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = cmdline
        codeinfo.stdout_name = self.metadata.options.output_filename
        calcinfo = datastructures.CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.retrieve_list = [*retrieve, self.metadata.options.output_filename]
        return calcinfo
