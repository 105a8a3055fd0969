"""``ferromlip trainingset import | export``: labelled frames in and out as extended XYZ or VASP ML_AB."""

from __future__ import annotations

import pathlib

import click

from aiida_ferromlip.cli import main, with_profile

FORMATS = ('extxyz', 'ml_ab')


def _format(path: pathlib.Path, given: str | None) -> str:
    if given:
        return given
    return 'ml_ab' if 'ML_AB' in path.name.upper() else 'extxyz'


def key_options(command):
    for option in reversed((
            click.option('--energy-key', default='energy', show_default=True, help='Info key of the energy (eV).'),
            click.option('--forces-key', default='forces', show_default=True, help='Array key of the forces (eV/Å).'),
            click.option('--stress-key', default='stress', show_default=True,
                         help='Info key of the stress (eV/Å³, ASE sign: positive = tensile).'),
            click.option('--format', 'fmt', type=click.Choice(FORMATS), default=None,
                         help='File format (default: ml_ab for a name containing ML_AB, else extxyz).'))):
        command = option(command)
    return command


@main.group('trainingset')
def training_set():
    """TrainingSets: labelled frames with the origin of every label."""


@training_set.command('import')
@click.argument('file', type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path))
@key_options
@click.option('--label', default='', help='Label of the new TrainingSet node.')
@with_profile
def import_(file, energy_key, forces_key, stress_key, fmt, label):
    """Import FILE as a TrainingSet (through a calcfunction: the file node is its origin)."""
    from aiida import orm

    from aiida_ferromlip.data.ml_ab import read_ml_ab, training_set_from_ml_ab
    from aiida_ferromlip.data.training_set import TrainingSet, training_set_from_extxyz

    fmt = _format(file, fmt)
    keys = {'energy_key': energy_key, 'forces_key': forces_key, 'stress_key': stress_key}
    # read once in memory first: a file the calcfunction would refuse leaves no node behind
    try:
        if fmt == 'extxyz':
            frames = len(TrainingSet.from_extxyz(file, **keys))
        else:
            if any(value != default for value, default in zip(keys.values(), ('energy', 'forces', 'stress'))):
                raise click.UsageError('--energy-key/--forces-key/--stress-key apply to extxyz only')
            frames = len(read_ml_ab(file.read_text())[0])
    except (ValueError, OSError) as exception:  # MlAbError is a ValueError
        raise click.ClickException(f'{file}: {exception}') from None
    node = orm.SinglefileData(file.absolute())
    if fmt == 'extxyz':
        result = training_set_from_extxyz(node, orm.Dict(keys), metadata={'call_link_label': 'import'})
    else:
        result = training_set_from_ml_ab(node, metadata={'call_link_label': 'import'})
    if label:
        result.label = label
    click.echo(f'TrainingSet<{result.pk}> ({result.uuid}): {frames} frames of {", ".join(result.species)} from {file}')


@training_set.command('export')
@click.argument('identifier')
@click.argument('file', type=click.Path(dir_okay=False, path_type=pathlib.Path))
@key_options
@with_profile
def export(identifier, file, energy_key, forces_key, stress_key, fmt):
    """Write the TrainingSet IDENTIFIER to FILE (refused if FILE exists)."""
    from aiida_ferromlip.data.ml_ab import write_ml_ab
    from aiida_ferromlip.data.training_set import TrainingSet
    from aiida_ferromlip.workflows.loop.after_loop import load_typed

    node = load_typed(identifier, TrainingSet, 'a TrainingSet')
    if file.exists():
        raise click.ClickException(f'{file} exists: not overwritten')
    if not file.parent.exists():
        raise click.ClickException(f'{file.parent} does not exist')
    fmt = _format(file, fmt)
    if fmt == 'extxyz':
        node.write_extxyz(file, energy_key=energy_key, forces_key=forces_key, stress_key=stress_key)
    else:
        file.write_text(write_ml_ab(node.to_atoms(), system_name=node.label or f'TrainingSet {node.pk}'))
    click.echo(f'wrote {len(node)} frames to {file} ({fmt})')
