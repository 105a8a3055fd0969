"""Entry points are registered and the embedded-profile setup is idempotent."""

import os
import subprocess
import sys
from importlib.metadata import entry_points

import pytest
from aiida.plugins import CalculationFactory, DataFactory, ParserFactory, WorkflowFactory

FACTORIES = {'aiida.data': DataFactory, 'aiida.calculations': CalculationFactory,
             'aiida.parsers': ParserFactory, 'aiida.workflows': WorkflowFactory}


def test_every_entry_point_is_ferromlip_and_loads():
    names = []
    for group, factory in FACTORIES.items():
        for ep in entry_points(group=group):
            if ep.value.startswith('aiida_ferromlip'):
                assert ep.name.startswith('ferromlip.'), ep
                assert factory(ep.name) is ep.load()
                names.append(ep.name)
    assert {'ferromlip.training_set', 'ferromlip.reference_label', 'ferromlip.label'} <= set(names)


def test_every_plugin_class_has_an_entry_point():
    """Each Data, CalcJob, Parser and WorkChain class of the package is reachable by a ferromlip.* name."""
    import importlib
    import pkgutil

    import aiida_ferromlip
    from aiida.engine import CalcJob, WorkChain
    from aiida.orm import Data
    from aiida.parsers import Parser

    registered = {ep.load() for group in FACTORIES for ep in entry_points(group=group)
                  if ep.value.startswith('aiida_ferromlip')}
    found = []
    for info in pkgutil.walk_packages(aiida_ferromlip.__path__, 'aiida_ferromlip.'):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (isinstance(obj, type) and obj.__module__ == module.__name__
                    and issubclass(obj, (Data, CalcJob, Parser, WorkChain)) and not vars(obj).get('_abstract')):
                found.append(obj)
                assert obj in registered, f'{obj.__module__}.{obj.__name__} has no ferromlip.* entry point'
    assert len(found) >= 7


def test_every_builder_from_protocol_follows_one_signature():
    """One convention for every ``get_builder_from_protocol``: codes first, then what the process works on
    (structures, material, potential, training set), then ``protocol`` and ``overrides`` (both optional), and
    everything after them keyword-only (``options``, ``engine``, ...). A new process that puts ``options`` in the
    positional slots, or drops ``overrides``, fails here."""
    import inspect

    checked = []
    for group in ('aiida.calculations', 'aiida.workflows'):
        for ep in entry_points(group=group):
            if not ep.value.startswith('aiida_ferromlip'):
                continue
            cls = ep.load()
            method = vars(cls).get('get_builder_from_protocol')
            if method is None:
                continue
            parameters = list(inspect.signature(getattr(cls, 'get_builder_from_protocol')).parameters.values())
            names = [p.name for p in parameters]
            where = f'{cls.__name__}.get_builder_from_protocol{inspect.signature(cls.get_builder_from_protocol)}'
            assert 'protocol' in names and 'overrides' in names, where
            assert names.index('overrides') == names.index('protocol') + 1, where
            for p in parameters[:names.index('protocol')]:
                assert p.kind is p.POSITIONAL_OR_KEYWORD, where
            for p in (parameters[names.index('protocol')], parameters[names.index('overrides')]):
                assert p.default is None, where
            for p in parameters[names.index('overrides') + 1:]:
                assert p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD), f'{where}: `{p.name}` must be keyword-only'
            checked.append(cls.__name__)
    assert {'GapFitCalculation', 'SampleCalculation', 'ActiveLearningWorkChain', 'LabelWorkChain'} <= set(checked)


def test_exit_codes_come_from_the_one_table():
    """Every exit code a plugin process declares beyond AiiDA's own (< 300, and BaseRestartWorkChain's) is the
    table's: same number, same message, and no number means two things across the plugin."""
    from aiida_ferromlip.exit_codes import AIIDA_RESTART_CODES, EXIT_CODES

    meanings = {}
    for group in ('aiida.calculations', 'aiida.workflows'):
        for ep in entry_points(group=group):
            if not ep.value.startswith('aiida_ferromlip'):
                continue
            for label, code in ep.load().spec().exit_codes.items():
                if code.status < 300 or AIIDA_RESTART_CODES.get(code.status) == label:
                    continue
                assert label in EXIT_CODES, f'{ep.name}: {label} is not in aiida_ferromlip.exit_codes'
                assert (code.status, code.message) == EXIT_CODES[label], f'{ep.name}: {label}'
                meanings.setdefault(code.status, set()).add(label)
    assert all(len(labels) == 1 for labels in meanings.values()), meanings
    assert {300, 404, 501} <= set(meanings)


#: The package's layers, lowest first (docs/architecture.md): a module may import its own layer and those below.
LAYERS = {'materials': 0, 'analysis': 0, 'exit_codes': 0, 'validation': 0, 'engines': 1, 'protocols': 1,
          'data': 2, 'calculations': 3, 'parsers': 3, 'provenance': 3, 'pseudos': 3, 'codes': 3, 'launch': 3,
          'workflows': 4, 'cli': 5}
#: Inside ``workflows/`` (layer 4): the DFT plumbing, the restart wrappers and the model registry at the bottom, labelling above them,
#: selection and the polarization model beside it, the benchmarks (physics card included) above labelling, the loop
#: on top.
WORKFLOW_LAYERS = {'restart': 0, 'dft': 0, 'fit': 0, 'label': 1, 'select': 1, 'polarization': 1, 'benchmarks': 2,
                   'loop': 3}


def test_layers_import_downward_only():
    """Every ``aiida_ferromlip`` import (module level or inside a function) points to the same layer or one below,
    inside ``workflows/`` too; layer 0 (materials, analysis) and the engines (which run on the computer) never import
    AiiDA."""
    import ast
    import pathlib

    import aiida_ferromlip

    root = pathlib.Path(aiida_ferromlip.__file__).parent
    wrong = []
    for path in root.rglob('*.py'):
        parts = path.relative_to(root).with_suffix('').parts
        if parts == ('__init__',):
            continue
        assert parts[0] in LAYERS, f'{parts[0]} has no layer: add it to LAYERS and docs/architecture.md'
        level = LAYERS[parts[0]]
        sublevel = None
        if parts[0] == 'workflows' and parts[1:] != ('__init__',):
            assert parts[1] in WORKFLOW_LAYERS, f'workflows/{parts[1]} has no layer: add it to WORKFLOW_LAYERS'
            sublevel = WORKFLOW_LAYERS[parts[1]]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module] if node.module != 'aiida_ferromlip' else \
                    [f'aiida_ferromlip.{alias.name}' for alias in node.names]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                head, _, rest = module.partition('.')
                if head == 'aiida_ferromlip' and rest and LAYERS.get(rest.split('.')[0], 99) > level:
                    wrong.append(f'{path.relative_to(root)} imports {module}')
                inner = rest.split('.') if head == 'aiida_ferromlip' else []
                if sublevel is not None and inner[:1] == ['workflows'] and len(inner) > 1 and \
                        WORKFLOW_LAYERS.get(inner[1], 99) > sublevel:
                    wrong.append(f'{path.relative_to(root)} imports {module} (workflows/{inner[1]} is above '
                                 f'workflows/{parts[1]})')
                if head == 'aiida' and level <= 1:
                    wrong.append(f'{path.relative_to(root)} imports {module} (layer {level} is free of AiiDA)')
    assert not wrong, wrong


@pytest.mark.timeout(300)
def test_embedded_profile_setup_is_idempotent(tmp_path):
    env = {**os.environ, 'AIIDA_PATH': str(tmp_path)}
    script = os.path.join(os.path.dirname(__file__), '..', 'setup_profiles', 'embedded.py')
    first = subprocess.run([sys.executable, script, '--profile', 'itest'], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert 'code ferromlip-label@localhost created' in first.stdout
    second = subprocess.run([sys.executable, script, '--profile', 'itest'], env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert 'profile `itest` exists' in second.stdout and 'code ferromlip-label@localhost exists' in second.stdout
    # localhost without a login shell (docs/throughput.md: `bash -l` cost 0.6-0.7 s per scheduler poll), set once
    assert 'use_login_shell = False' in first.stdout and 'use_login_shell' not in second.stdout
    config = (tmp_path / '.aiida' / 'config.json').read_text()
    assert '"core.sqlite_dos"' in config and '"core.zeromq"' in config
    no_path = subprocess.run([sys.executable, script], env={k: v for k, v in os.environ.items() if k != 'AIIDA_PATH'},
                             capture_output=True, text=True)
    assert no_path.returncode == 2 and 'AIIDA_PATH is not set' in no_path.stderr


def test_renamed_protocols_still_work_with_a_warning():
    """The protocols named after the papers (`minimalist`, `batio3_gap`) answer to their old names too."""
    from aiida_ferromlip.calculations.gap_fit import GapFitCalculation
    from aiida_ferromlip.calculations.sample import SampleCalculation

    with pytest.warns(DeprecationWarning, match='`seed003` is now called `batio3_gap`'):
        old = GapFitCalculation.get_protocol_inputs('seed003')
    assert old == GapFitCalculation.get_protocol_inputs('batio3_gap')
    with pytest.warns(DeprecationWarning, match='batio3_gap_npt'):
        assert SampleCalculation.get_protocol_inputs('seed003_npt')['parameters']['ensemble'] == 'nst'
    with pytest.raises(ValueError):
        GapFitCalculation.get_protocol_inputs('seed004')
