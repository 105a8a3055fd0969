"""``ferromlip potential export``: a potential out of AiiDA, ready for ASE and LAMMPS, with its data and card."""

from __future__ import annotations

import pathlib

import click

from aiida_ferromlip.cli import main, with_profile


@main.group()
def potential():
    """Potentials (GapPotential, NequipPotential) made by the plugin."""


@potential.command('export')
@click.argument('identifier')
@click.argument('directory', type=click.Path(path_type=pathlib.Path))
@with_profile
def export(identifier, directory):
    """Write the potential IDENTIFIER into the new DIRECTORY: model file(s), training_set.extxyz, the physics card
    (Markdown + PNG) when one judged it, README.md with settings and ASE/LAMMPS snippets, provenance.json."""
    from aiida_ferromlip.data.potential import POTENTIAL_TYPES
    from aiida_ferromlip.workflows.loop.after_loop import export_potential, load_typed

    node = load_typed(identifier, POTENTIAL_TYPES, 'a Potential (GapPotential or NequipPotential)')
    for path in export_potential(node, directory):
        click.echo(f'wrote {path}')
