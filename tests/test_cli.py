"""The after-the-loop command line (``ferromlip loop | potential | trainingset``) driven by click's runner."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.io import read
from click.testing import CliRunner

from aiida_ferromlip.cli import main
from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.workflows.loop.active_learning import ActiveLearningWorkChain, learning_curve

from .test_active_learning import builder_for, codes, starts  # noqa: F401  (codes is a fixture)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def by_site(training_set):
    """Forces of every frame with the atoms in one order (by position), whatever order a format wrote them in."""
    rows = []
    for atoms in training_set.to_atoms():
        order = np.lexsort(np.round(atoms.positions, 6).T[::-1])
        rows.append(atoms.get_forces()[order])
    return np.concatenate(rows)


def test_trainingset_export_and_import_round_trip(labelled_frames, tmp_path):
    node = TrainingSet(frames=labelled_frames).store()
    for options, name in (((), 'plain.xyz'), (('--energy-key', 'REF_energy', '--forces-key', 'REF_forces',
                                               '--stress-key', 'REF_stress'), 'ref.extxyz'), ((), 'ML_AB')):
        result = invoke('trainingset', 'export', node.pk, tmp_path / name, *options)
        assert result.exit_code == 0, result.output
        if name == 'ref.extxyz':  # the labels sit under the asked keys, as gap_fit-style files carry them
            frame = read(tmp_path / name, index=0)
            assert frame.info['REF_energy'] == pytest.approx(labelled_frames[0].get_potential_energy())
            assert np.allclose(frame.arrays['REF_forces'], labelled_frames[0].get_forces())
        result = invoke('trainingset', 'import', tmp_path / name, *options)
        assert result.exit_code == 0, result.output
        back = orm.load_node(int(result.output.split('<')[1].split('>')[0]))
        assert isinstance(back, TrainingSet) and len(back) == len(node)
        assert back.creator is not None  # imported through a calcfunction: the file is its origin
        assert np.allclose(back.energies, node.energies, atol=1e-8), name
        assert np.allclose(by_site(back), by_site(node), atol=1e-6), name  # ML_AB groups the atoms by type
        has_stress = np.isfinite(node.get_array('stresses')).all(axis=(1, 2))
        assert np.allclose(back.get_array('stresses')[has_stress], node.get_array('stresses')[has_stress],
                           atol=1e-8), name

    # refusals: one line, exit code 1, nothing written
    count = orm.QueryBuilder().append(orm.Node).count()
    for args, message in (
            (('trainingset', 'export', node.pk, tmp_path / 'plain.xyz'), 'exists: not overwritten'),
            (('trainingset', 'import', tmp_path / 'ref.extxyz'), 'no energy (looked for the key `energy`)'),
            (('trainingset', 'export', 99999999, tmp_path / 'new.xyz'), 'no node with pk or uuid `99999999`'),
            (('trainingset', 'export', orm.Int(1).store().pk, tmp_path / 'new.xyz'), 'is a Int, not a TrainingSet'),
            (('potential', 'export', node.pk, tmp_path / 'export'), 'is a TrainingSet, not a Potential')):
        count = orm.QueryBuilder().append(orm.Node).count()
        result = invoke(*args)
        assert result.exit_code == 1 and message in result.output, result.output
        assert orm.QueryBuilder().append(orm.Node).count() == count
    assert not (tmp_path / 'new.xyz').exists() and not (tmp_path / 'export').exists()


def test_learning_curve_marks_the_batches_below_the_thresholds():
    errors = {f'iteration_{i:03d}': orm.Dict({'energy_per_fu_meV_rmse': e, 'forces_meV_per_A_rmse': f,
                                              'stress_kbar_rmse': 1.0, 'num_train_frames': 10 * (i + 1)})
              for i, (e, f) in enumerate(((9.0, 50.0), (4.0, 150.0), (4.0, 80.0), (5.0, 100.0)))}
    curve = learning_curve(thresholds=orm.Dict({'energy_meV_per_fu': 5.0, 'forces_meV_per_A': 100.0}), **errors)
    # below both thresholds (inclusive, as the loop's own test): only the last two
    assert curve['curve'].get_array('below_thresholds').tolist() == [False, False, True, True]
    assert curve['plot'].get_content('rb')[:4] == b'\x89PNG'


def test_show_export_and_continue_a_finished_loop(codes, tmp_path):  # noqa: F811
    from quippy.potential import Potential

    builder = builder_for(codes, starts('R3m'), parameters={'max_iterations': 1, 'seed_frames_per_structure': 3},
                          select_parameters={'num_select': 2})
    results, first = run_get_node(builder)
    assert first.exit_status == ActiveLearningWorkChain.exit_codes.STOPPED_BUDGET_EXHAUSTED.status

    result = invoke('loop', 'show', first.pk, '--plots', tmp_path / 'plots')
    assert result.exit_code == 0, result.output
    assert 'stop reason: the maximum of 1 iterations was reached' in result.output
    assert (tmp_path / 'plots' / 'learning_curve.png').read_bytes()[:4] == b'\x89PNG'
    overview = json.loads(invoke('loop', 'show', first.pk, '--json').output)
    row = overview['iterations'][0]
    errors = first.base.links.get_outgoing(link_label_filter='errors_000').one().node.outputs.result
    assert (row['training_frames'], row['selected'], row['labels']) == (3, 2, 2)
    assert row['forces_meV_per_A_rmse'] == pytest.approx(errors['forces_meV_per_A_rmse'])
    assert overview['iterations'][-1]['final'] and overview['outputs']['potential'] == results['potential'].pk

    # export: the GAP loads in quippy and gives the node's energies; the extxyz gives the TrainingSet's labels
    potential, training_set = results['potential'], results['training_set']
    result = invoke('potential', 'export', potential.pk, tmp_path / 'gap')
    assert result.exit_code == 0, result.output
    frame = training_set.get_frame(0)
    reference = frame.get_potential_energy()
    frame.calc = Potential(param_filename=str(tmp_path / 'gap' / 'gap.xml'))
    exported = frame.get_potential_energy()
    frame.calc = potential.calculator()
    assert exported == pytest.approx(frame.get_potential_energy(), abs=1e-8)
    assert read(tmp_path / 'gap' / 'training_set.extxyz', index=0).get_potential_energy() == pytest.approx(reference)
    provenance = json.loads((tmp_path / 'gap' / 'provenance.json').read_text())
    assert provenance['loop']['uuid'] == first.uuid and provenance['training_set']['uuid'] == training_set.uuid
    assert 'pair_style quip' in (tmp_path / 'gap' / 'lammps.in').read_text()
    assert invoke('potential', 'export', potential.pk, tmp_path / 'gap').exit_code == 1  # no overwrite

    # continue: a budget at or below what is spent is refused; a larger one adds a batch, linked to the first loop
    used = len(training_set)
    refused = invoke('loop', 'continue', first.pk, '--max-labels', used)
    assert refused.exit_code == 1 and f'is not above the {used} labels already in' in refused.output
    result = invoke('loop', 'continue', first.pk, '--max-labels', used + 2, '--max-iterations', 1)
    assert result.exit_code == 0, result.output
    second = orm.load_node(int(result.output.split('ActiveLearningWorkChain<')[1].split('>')[0]))
    assert second.inputs.initial_training_set.uuid == training_set.uuid
    assert second.inputs.initial_potential.uuid == potential.uuid
    assert len(second.outputs.training_set) == used + 2
    assert second.base.extras.get('continues') == first.uuid
    assert f'continues from TrainingSet<{training_set.pk}>' in result.output


def test_setup_codes_registers_each_code_once(aiida_computer_local):
    """`ferromlip setup codes` registers the plugin's programs on a computer; a second run changes nothing; an
    unknown computer is refused in one line."""
    computer = aiida_computer_local(label='setup-codes-test')
    first = invoke('setup', 'codes', '--computer', computer.label)
    assert first.exit_code == 0, first.output
    for label in ('ferromlip-label', 'ferromlip-gap', 'ferromlip-md', 'ferromlip-nequip', 'ferromlip-task'):
        assert f'code {label}@{computer.label} created' in first.output
    code = orm.load_code(f'ferromlip-gap@{computer.label}')
    assert code.default_calc_job_plugin == 'ferromlip.gap_fit' and code.filepath_executable.name == 'ferromlip-gap'
    count = orm.QueryBuilder().append(orm.InstalledCode).count()
    second = invoke('setup', 'codes', '--computer', computer.label)
    assert second.exit_code == 0 and 'created' not in second.output
    assert orm.QueryBuilder().append(orm.InstalledCode).count() == count
    refused = CliRunner().invoke(main, ['setup', 'codes', '--computer', 'no-such-computer'])
    assert refused.exit_code == 1 and 'no computer `no-such-computer`' in refused.output


@pytest.mark.skipif(shutil.which('mpirun') is None, reason='no mpirun (Open MPI) on this machine')
def test_two_jobs_launched_by_the_computers_mpirun_may_use_every_core(aiida_computer_local):
    """Open MPI binds the one rank of each `mpirun -np 1` to core 0, so two pw.x side by side shared one core; the
    setup's mpirun leaves the placement to the kernel: each launch may run on every core of this machine."""
    from aiida_ferromlip.cli.setup import ensure_unbound_mpirun

    computer = aiida_computer_local(label='unbound-mpirun-test')
    computer.set_mpirun_command(['mpirun', '-np', '{tot_num_mpiprocs}'])  # aiida's (and `verdi presto`'s) default
    ensure_unbound_mpirun(computer, echo=lambda message: None)
    command = [arg.replace('{tot_num_mpiprocs}', '1') for arg in computer.get_mpirun_command()]
    environment = {**os.environ, 'OMPI_ALLOW_RUN_AS_ROOT': '1', 'OMPI_ALLOW_RUN_AS_ROOT_CONFIRM': '1'}
    script = 'import os; print(sorted(os.sched_getaffinity(0)))'
    every_core = sorted(os.sched_getaffinity(0))
    for _ in range(2):
        launched = subprocess.run([*command, sys.executable, '-c', script], capture_output=True, text=True,
                                  env=environment, timeout=120, check=True)
        assert json.loads(launched.stdout.strip().splitlines()[-1]) == every_core
    ensure_unbound_mpirun(computer, echo=lambda message: None)  # once is enough; srun is not mpirun's to change
    assert computer.get_mpirun_command().count('--bind-to') == 1
    computer.set_mpirun_command(['srun', '-n', '{tot_num_mpiprocs}'])
    ensure_unbound_mpirun(computer, echo=lambda message: None)
    assert computer.get_mpirun_command() == ['srun', '-n', '{tot_num_mpiprocs}']


def test_scripts_find_codes_by_label_not_by_computer(aiida_computer_local, monkeypatch, capsys):
    """The run scripts' code lookup: none -> what to run; one -> it, whatever its computer; one on each of two
    computers -> refused naming both until --computer or --<name>-code chooses; a script fails as a usage error."""
    import argparse

    from aiida_ferromlip.codes import CODES, CodeNotFound, add_code_options, codes_from_arguments, load_plugin_code

    label = 'ferromlip-gap-lookup-test'
    monkeypatch.setitem(CODES, 'gap', (label, *CODES['gap'][1:]))
    with pytest.raises(CodeNotFound, match='run `ferromlip setup codes'):
        load_plugin_code('gap')
    first, second = aiida_computer_local(label='lookup-a'), aiida_computer_local(label='lookup-b')
    codes = [orm.InstalledCode(computer=computer, filepath_executable='/bin/true', label=label).store()
             for computer in (first, second)]
    with pytest.raises(CodeNotFound, match=f'2 codes are labelled `{label}`.*{label}@lookup-a, {label}@lookup-b'):
        load_plugin_code('gap')
    assert load_plugin_code('gap', computer='lookup-b').uuid == codes[1].uuid
    assert load_plugin_code('gap', code=f'{label}@lookup-a').uuid == codes[0].uuid
    with pytest.raises(CodeNotFound, match='no code `ferromlip-gap-lookup-test@nowhere`'):
        load_plugin_code('gap', computer='nowhere')

    parser = argparse.ArgumentParser()
    add_code_options(parser, 'gap', 'md')
    found = codes_from_arguments(parser, parser.parse_args(['--computer', 'lookup-a']), 'gap', 'md')
    assert found['gap'].uuid == codes[0].uuid
    ambiguous = codes_from_arguments(parser, parser.parse_args([]), 'gap', 'md')
    with pytest.raises(SystemExit) as exit_info:
        ambiguous['gap']
    assert exit_info.value.code == 2 and 'pass --computer NAME or --gap-code' in capsys.readouterr().err


@pytest.mark.slow
def test_continue_a_loop_that_crashed_after_labelling(codes, monkeypatch):  # noqa: F811
    """A loop that stops without outputs (killed, excepted, its runner lost) is continued from what it called: the
    frames it labelled after its last fit are kept and fitted first, not lost."""
    import inspect

    from aiida_ferromlip.workflows.loop import active_learning

    fits = []

    def crashing_get_model(name):  # the machine goes down as the final fit is about to start
        if inspect.stack()[1].function == 'fit':
            fits.append(name)
            if len(fits) == 2:
                raise RuntimeError('the node running the loop went down')
        return get_model(name)

    get_model = active_learning.get_model
    monkeypatch.setattr(active_learning, 'get_model', crashing_get_model)
    builder = builder_for(codes, starts('R3m'), parameters={'max_iterations': 1, 'seed_frames_per_structure': 3},
                          select_parameters={'num_select': 2})
    with pytest.raises(RuntimeError, match='went down'):
        run_get_node(builder)
    monkeypatch.setattr(active_learning, 'get_model', get_model)
    first = orm.QueryBuilder().append(ActiveLearningWorkChain, tag='loop').order_by(
        {'loop': {'ctime': 'desc'}}).first(flat=True)
    assert first.is_excepted and 'training_set' not in first.outputs
    merged = first.base.links.get_outgoing(link_label_filter='merge_000').one().node.outputs.result
    assert len(merged) == 3 + 2  # seed labels + the batch labelled after the only fit

    result = invoke('loop', 'continue', first.pk, '--max-labels', 5 + 2, '--max-iterations', 1)
    assert result.exit_code == 0, result.output
    second = orm.load_node(int(result.output.split('ActiveLearningWorkChain<')[1].split('>')[0]))
    assert second.inputs.initial_training_set.uuid == merged.uuid
    assert 'initial_potential' not in second.inputs  # the first fit never saw the batch: the continuation refits
    fit = second.base.links.get_outgoing(link_label_filter='fit_000').one().node
    assert len(fit.inputs.gap_fit.training_set) == 5
    assert len(second.outputs.training_set) == 5 + 2
    assert 'recovered from what it called before it stopped (excepted)' in second.description


def test_a_stopped_loop_leaves_the_labellers_md_volumes_and_the_first_stable_test_set(labelled_frames):
    """What `loop continue` takes from a loop that stopped without outputs, on the graph such a loop leaves (built
    here by hand, no jobs): the labeller's side as the last card carried it (the first potential's card adds the
    labeller's MD volumes to the labeller-only card's values), and the test set of the first card whose MD was
    stable — the rule the loop's inspect_card follows."""
    from aiida.common.links import LinkType
    from plumpy import ProcessState

    from aiida_ferromlip.workflows.loop.after_loop import last_state

    loop = orm.WorkChainNode()
    loop.set_process_state(ProcessState.KILLED)
    loop.store()

    def called(label, **outputs):
        node = orm.WorkChainNode()
        node.base.links.add_incoming(loop, LinkType.CALL_WORK, label)
        node.store()
        for name, value in outputs.items():
            value.store()
            value.base.links.add_incoming(node, LinkType.RETURN, name)
        node.set_process_state(ProcessState.FINISHED)
        node.set_exit_status(0)
        node.seal()
        return node

    labeller_only = orm.Dict({'eos': {'lattice': 4.035}})
    with_md = orm.Dict({'eos': {'lattice': 4.035}, 'stability': {'T_0300K': {'volume_per_fu': 68.8}}})
    broken, stable = (TrainingSet(frames=labelled_frames[:k]) for k in (1, 2))
    called('card_labeller', reference_values=labeller_only)
    called('card_000', reference_values=with_md, card=orm.Dict({'failed_groups': ['stability', 'wells']}),
           test_set=broken)
    called('card_001', reference_values=with_md, card=orm.Dict({'failed_groups': ['wells']}), test_set=stable)
    called('card_002', reference_values=with_md, card=orm.Dict({'failed_groups': ['soft_modes']}),
           test_set=TrainingSet(frames=labelled_frames))
    state = last_state(loop)
    assert not state['complete'] and state['training_set'] is None and state['potential'] is None
    assert state['reference_values'].uuid == with_md.uuid
    assert state['test_set'].uuid == stable.uuid
