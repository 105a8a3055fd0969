"""``ferromlip``: command-line helpers that are not processes (setting up pseudopotentials, ...)."""

from __future__ import annotations

import pathlib

import click


@click.group()
def main():
    """aiida-ferromlip helpers."""


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
