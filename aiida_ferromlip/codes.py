"""The plugin's codes: which programs ``ferromlip setup codes`` registers, and how scripts find them in a profile.

The run scripts (``workflows/*.py``, ``benchmarks/*.py``) take ``--<name>-code`` options (``add_code_options``);
without one, ``load_plugin_code`` looks the code up by its label in the loaded profile — the one ``ferromlip setup
codes`` made — on ``--computer`` where given, else on the only computer that has it. Nothing names ``@localhost``.
"""

from __future__ import annotations

import argparse

#: Short name -> (code label, executable in the environment's bin/ or on PATH, default CalcJob plugin, what it runs).
CODES = {
    'label': ('ferromlip-label', 'ferromlip-label', 'ferromlip.reference_label', 'the reference labeller (SevenNet-0)'),
    'gap': ('ferromlip-gap', 'ferromlip-gap', 'ferromlip.gap_fit', 'gap_fit'),
    'md': ('ferromlip-md', 'ferromlip-md', 'ferromlip.sample', 'the MD sampler (i-PI + ASE clients)'),
    'nequip': ('ferromlip-nequip', 'ferromlip-nequip', 'ferromlip.nequip_train', 'NequIP/Allegro training'),
    'task': ('ferromlip-task', 'ferromlip-task', 'ferromlip.atoms_task',
             'the ASE-task job (relaxations, NEB, EOS, energies)'),
    'pw': ('pw', 'pw.x', 'quantumespresso.pw', "Quantum ESPRESSO's pw.x"),
}


class CodeNotFound(ValueError):
    """No code, or more than one, answers to a name in the loaded profile."""


def load_plugin_code(name: str, code: str | None = None, computer: str | None = None):
    """The code ``name`` (a key of :data:`CODES`): ``code`` (any identifier ``verdi code`` takes) if given, else the
    profile's code labelled ``CODES[name][0]`` on ``computer``, else on the only computer that has one.

    :raises CodeNotFound: with what to run or pass when there is none, or several to choose from.
    """
    from aiida import orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    if name not in CODES:
        raise CodeNotFound(f'unknown code `{name}`: one of {", ".join(CODES)}')
    if code is not None:
        try:
            return orm.load_code(code)
        except (NotExistent, MultipleObjectsError) as exception:
            raise CodeNotFound(f'--{name}-code {code}: {exception}') from None
    label = CODES[name][0]
    if computer is not None:
        try:
            return orm.load_code(f'{label}@{computer}')
        except NotExistent:
            raise CodeNotFound(f'no code `{label}@{computer}` in this profile: run `ferromlip setup codes --computer '
                               f'{computer}`, or pass --{name}-code') from None
    found = orm.QueryBuilder().append(orm.AbstractCode, filters={'label': label}).all(flat=True)
    if not found:
        raise CodeNotFound(f'no code `{label}` in this profile: run `ferromlip setup codes --computer NAME` '
                           f'(`make setup` does it for `localhost`), or pass --{name}-code')
    if len(found) > 1:
        names = ', '.join(sorted(code.full_label for code in found))
        raise CodeNotFound(f'{len(found)} codes are labelled `{label}` ({names}): pass --computer NAME or '
                           f'--{name}-code')
    return found[0]


def add_code_options(parser: argparse.ArgumentParser, *names: str) -> None:
    """``--<name>-code`` for each of ``names`` and one ``--computer`` (see :func:`codes_from_arguments`)."""
    for name in names:
        parser.add_argument(f'--{name}-code', default=None, metavar='CODE',
                            help=f'{CODES[name][3]} (default: the profile\'s `{CODES[name][0]}` code)')
    parser.add_argument('--computer', default=None,
                        help='take the default codes from this computer (needed when several computers have them)')


def codes_from_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace, *names: str) -> 'ScriptCodes':
    """The codes ``names`` as the parsed ``--<name>-code``/``--computer`` options give them, looked up when first
    used (a script that labels with pw.x never needs the reference labeller's code, and the other way round); a code
    that cannot be found ends the script with the parser's usage error (exit 2), before anything is submitted."""
    return ScriptCodes(parser, args, names)


class ScriptCodes(dict):
    """``codes['gap']``: the code, loaded on first use (see :func:`codes_from_arguments`)."""

    def __init__(self, parser, args, names):
        super().__init__()
        self._parser, self._args, self._names = parser, args, names

    def __missing__(self, name):
        if name not in self._names:
            raise KeyError(f'the script declared no --{name}-code option')
        try:
            code = load_plugin_code(name, getattr(self._args, f'{name}_code'), self._args.computer)
        except CodeNotFound as exception:
            self._parser.error(str(exception))
        self[name] = code
        return code
