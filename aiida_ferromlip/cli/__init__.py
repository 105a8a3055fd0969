"""``ferromlip``: the plugin's command line. Setting up (``pseudos``) and, after a loop, inspecting it, taking its
potential and data out and continuing it (``loop``, ``potential``, ``trainingset``); ``exit-codes`` prints the
plugin's exit-code table.

Every command that reads the database takes ``-p/--profile`` (default: the default profile). Refusals (an unknown
pk, a node of the wrong type, an existing target, a budget already spent) are one line on stderr and exit code 1,
with nothing written.
"""

from __future__ import annotations

import functools
import pathlib

import click


@click.group()
def main():
    """aiida-ferromlip: active learning of interatomic potentials for ferroelectrics."""


def with_profile(command):
    """Add ``-p/--profile`` and load it before the command runs; turn the after-loop refusals into one-line errors."""

    @click.option('-p', '--profile', default=None, help='AiiDA profile (default: the default profile).')
    @functools.wraps(command)
    def wrapper(*args, profile=None, **kwargs):
        from aiida import load_profile
        from aiida.manage import get_manager

        if profile is not None or get_manager().get_profile() is None:  # keep a profile already loaded (a script)
            load_profile(profile, allow_switch=True)
        try:
            return command(*args, **kwargs)
        except ValueError as exception:  # the after-loop refusals (AfterLoopError) and the data types' own
            raise click.ClickException(str(exception)) from None

    return wrapper


@main.group()
def pseudos():
    """PBEsol pseudopotentials built offline with ld1.x."""


@pseudos.command('install')
@click.option('--type', 'kind', type=click.Choice(['us', 'paw']), default='us', show_default=True,
              help='Ultrasoft (rrkjus) or PAW (kjpaw) pslibrary 1.0.0 pseudopotentials.')
@click.option('--label', default=None, help='Family label (default: ferromlip/pslibrary-1.0.0/PBEsol/<TYPE>).')
@click.option('--directory', type=click.Path(file_okay=False, path_type=pathlib.Path), default=None,
              help='Where to keep the generated UPF files (default: a temporary directory).')
@click.option('--profile', default=None, help='AiiDA profile (default: the default profile).')
def install(kind, label, directory, profile):
    """Generate the UPFs with ld1.x and install them as an aiida-pseudo family with cutoffs (idempotent)."""
    from aiida import load_profile

    from aiida_ferromlip.pseudos import install_family

    load_profile(profile, allow_switch=True)
    family = install_family(directory=directory, kind=kind, label=label)
    cutoffs = family.get_cutoffs()
    click.echo(f'family `{family.label}` (pk {family.pk}): {", ".join(sorted(family.elements))}')
    for element in sorted(cutoffs):
        click.echo(f'  {element:2s} ecutwfc {cutoffs[element]["cutoff_wfc"]:6.1f} Ry, '
                   f'ecutrho {cutoffs[element]["cutoff_rho"]:6.1f} Ry')


@main.command('exit-codes')
def exit_codes():
    """The plugin's exit codes: number, label, which processes use it, message (a Markdown table)."""
    from importlib.metadata import entry_points

    from aiida_ferromlip.exit_codes import EXIT_CODES

    users: dict[str, list[str]] = {label: [] for label in EXIT_CODES}
    for group in ('aiida.calculations', 'aiida.workflows'):
        for entry_point in entry_points(group=group):
            if entry_point.value.startswith('aiida_ferromlip'):
                process = entry_point.load()
                for label in set(process.spec().exit_codes) & set(users):
                    users[label].append(process.__name__)
    click.echo('| status | label | used by | message |\n|---|---|---|---|')
    for label, (status, message) in sorted(EXIT_CODES.items(), key=lambda item: item[1][0]):
        click.echo(f'| {status} | `{label}` | {", ".join(sorted(users[label])) or "-"} | {message} |')


from aiida_ferromlip.cli import loop, potential, setup, training_set  # noqa: E402,F401  (register the command groups)
