"""The cluster templates of setup_profiles/cluster/ are what `verdi computer setup` / `verdi code create` accept."""

import pathlib

import pytest
from aiida import orm
from click.testing import CliRunner

TEMPLATES = pathlib.Path(__file__).parent.parent / 'setup_profiles' / 'cluster'


def invoke(command, *args):
    from aiida.common import AttributeDict
    from aiida.manage import get_manager
    from aiida.manage.configuration import get_config

    context = AttributeDict({'config': get_config(), 'profile': get_manager().get_profile()})
    result = CliRunner().invoke(command, [*args], catch_exceptions=False, obj=context)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def cleanup():
    """Remove the computer and codes the templates create: other tests' `aiida_code_installed` fixtures pick up an
    existing code by label (a `pw` on `mycluster` broke the QE tests that ran after this one)."""
    yield
    for code in orm.QueryBuilder().append(orm.InstalledCode, filters={'label': {'in': ['pw', 'ferromlip-gap']}}).all(flat=True):
        if code.computer.label == 'mycluster':
            orm.Node.collection.delete(code.pk)
    for computer in orm.QueryBuilder().append(orm.Computer, filters={'label': 'mycluster'}).all(flat=True):
        orm.Computer.collection.delete(computer.pk)


def test_cluster_templates_set_up_a_slurm_computer_and_codes(aiida_profile, cleanup):
    from aiida.cmdline.commands.cmd_code import code_create
    from aiida.cmdline.commands.cmd_computer import computer_setup

    invoke(computer_setup, '--non-interactive', '--config', str(TEMPLATES / 'computer.yml'))
    computer = orm.load_computer('mycluster')
    assert computer.scheduler_type == 'core.slurm' and computer.transport_type == 'core.ssh_async'
    assert computer.get_mpirun_command() == ['srun', '-n', '{tot_num_mpiprocs}']
    invoke(code_create.get_command(None, 'core.code.installed'), '--non-interactive', '--config', str(TEMPLATES / 'code-pw.yml'))
    invoke(code_create.get_command(None, 'core.code.installed'), '--non-interactive', '--config',
           str(TEMPLATES / 'code-ferromlip.yml'))
    pw = orm.load_code('pw@mycluster')
    assert pw.default_calc_job_plugin == 'quantumespresso.pw' and 'module load' in pw.prepend_text
    assert orm.load_code('ferromlip-gap@mycluster').default_calc_job_plugin == 'ferromlip.gap_fit'
    # the SSH settings file holds only options `verdi computer configure core.ssh_async` knows
    import yaml
    from aiida.plugins import TransportFactory

    valid = set(TransportFactory('core.ssh_async').get_valid_auth_params())
    assert set(yaml.safe_load((TEMPLATES / 'ssh.yml').read_text())) <= valid
