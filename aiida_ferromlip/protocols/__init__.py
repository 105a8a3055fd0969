"""YAML protocols: one file per stage, read through aiida-quantumespresso's ``ProtocolMixin``; the settings merge
every stage shares (no AiiDA process imports: the data layer uses it too)."""

from __future__ import annotations

import pathlib

#: The folder of the YAML protocol files.
PROTOCOLS = pathlib.Path(__file__).parent

#: Protocols renamed after the papers they follow (old name -> new); the old names still work, with a warning.
#: ``minimalist``: Robredo-Magro, Mukherjee, Aramberri, Íñiguez-González, "Minimalist machine-learned interatomic
#: potentials can predict complex structural behaviors accurately" (arXiv:2511.17449); ``batio3_gap``: Gigli, Veit,
#: Kotiuga, Pizzi, Marzari, Ceriotti, "Thermodynamics and dielectric response of BaTiO3 by data-driven modeling",
#: npj Comput. Mater. 8, 209 (2022).
RENAMED_PROTOCOLS = {'seed000': 'minimalist', 'seed003': 'batio3_gap', 'seed003_nvt': 'batio3_gap_nvt',
                     'seed003_npt': 'batio3_gap_npt'}


def protocol_name(name: str | None) -> str | None:
    """``name``, or its new name (with a ``DeprecationWarning``) when it is one of :data:`RENAMED_PROTOCOLS`."""
    if name in RENAMED_PROTOCOLS:
        import warnings

        warnings.warn(f'protocol `{name}` is now called `{RENAMED_PROTOCOLS[name]}`; the old name will go',
                      DeprecationWarning, stacklevel=3)
        return RENAMED_PROTOCOLS[name]
    return name


def default_inputs(name: str) -> dict:
    """The ``default_inputs`` of the protocol file ``<name>.yaml``: the one place a stage's defaults live."""
    import yaml

    with open(PROTOCOLS / f'{name}.yaml') as handle:
        return yaml.safe_load(handle)['default_inputs']


def merged_settings(parameters, defaults: dict, what: str) -> dict:
    """``defaults`` updated with the given ``parameters`` (a Dict node, a dict or None), neither mutated: a group
    (a dict-valued default, e.g. the loop's ``thresholds``) is merged key by key, one level deep; unknown keys are an
    error naming the known ones. The one settings merge of the plugin (loop, selection, benchmarks, card)."""
    given = (parameters.get_dict() if hasattr(parameters, 'get_dict') else dict(parameters)) if parameters else {}
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(f'unknown {what} parameters {sorted(unknown)}; known: {sorted(defaults)}')
    merged = {key: (dict(value) if isinstance(value, dict) else value) for key, value in defaults.items()}
    for key, value in given.items():
        merged[key] = {**merged[key], **value} if isinstance(merged[key], dict) and isinstance(value, dict) else value
    return merged
