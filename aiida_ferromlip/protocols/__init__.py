"""YAML protocols: one file per stage, read through aiida-quantumespresso's ``ProtocolMixin``; the settings merge
every stage shares (no AiiDA process imports: the data layer uses it too)."""

from __future__ import annotations

import pathlib

#: The folder of the YAML protocol files.
PROTOCOLS = pathlib.Path(__file__).parent


def default_inputs(name: str) -> dict:
    """The ``default_inputs`` of the protocol file ``<name>.yaml``: the one place a stage's defaults live."""
    import yaml

    with open(PROTOCOLS / f'{name}.yaml') as handle:
        return yaml.safe_load(handle)['default_inputs']


def merged_settings(parameters, defaults: dict, what: str) -> dict:
    """``defaults`` updated with the given ``parameters`` (a Dict node, a dict or None), not mutated; unknown keys
    are an error naming the known ones."""
    given = (parameters.get_dict() if hasattr(parameters, 'get_dict') else dict(parameters)) if parameters else {}
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(f'unknown {what} parameters {sorted(unknown)}; known: {sorted(defaults)}')
    return {**defaults, **given}
