"""LabelWorkChain and ReferenceLabelCalculation through AiiDA: provenance, batches, failures, bad inputs."""

import re

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_ferromlip.calculations.reference_label import ReferenceLabelCalculation
from aiida_ferromlip.data.training_set import TrainingSet
from aiida_ferromlip.materials import perovskite_polymorph
from aiida_ferromlip.provenance import labelling_calculations
from aiida_ferromlip.workflows.label.base import LabelWorkChain

from .conftest import cubic_batio3


def structures(*phases):
    return {phase.replace('-', '_'): orm.StructureData(ase=perovskite_polymorph('Ba', 'Ti', phase)) for phase in phases}


def test_label_workchain_batches_and_provenance(label_code):
    inputs = structures('R3m', 'Amm2', 'P4mm')
    builder = LabelWorkChain.get_builder_from_protocol(label_code, inputs, overrides={'frames_per_job': 2})
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message

    training_set = results['training_set']
    assert isinstance(training_set, TrainingSet) and len(training_set) == 3
    assert results['failed_frames'].get_dict() == {}
    assert results['cost']['num_labelled'] == 3 and len(results['cost']['batches']) == 2

    # Graph walk and per-frame origins agree: every frame leads back to the CalcJob that labelled it.
    calcs = labelling_calculations(training_set)
    assert len(calcs) == 2
    assert all(isinstance(c, orm.CalcJobNode) and c.process_class is ReferenceLabelCalculation for c in calcs)
    assert {c.uuid for c in calcs} == {o['process_uuid'] for o in training_set.origins}
    for origin in training_set.origins:
        calc = orm.load_node(origin['process_uuid'])
        assert origin['structure_uuid'] == calc.inputs.structures[origin['frame_key']].uuid
        assert origin['structure_uuid'] == inputs[origin['frame_key']].uuid
    assert all(o['labeller'] == 'sevennet:7net-0' for o in training_set.origins)


def test_failed_frames_are_reported_and_left_out(label_code):
    """A real labeller rejection (force above `max_force`) drops that frame alone and says why."""
    inputs = {'cubic': orm.StructureData(ase=cubic_batio3()), **structures('R3m')}
    builder = LabelWorkChain.get_builder_from_protocol(
        label_code, inputs, overrides={'reference': {'settings': {'max_force': 0.01}}})
    results, node = run_get_node(builder)
    assert node.is_finished_ok
    assert [o['frame_key'] for o in results['training_set'].origins] == ['cubic']
    assert 'exceeds 0.01 eV/Å' in results['failed_frames']['R3m']
    report = ' '.join(log.message for log in orm.Log.collection.get_logs_for(node))
    assert 'frame `R3m` left out' in report


def test_all_frames_failing_is_an_exit_code(label_code):
    builder = LabelWorkChain.get_builder_from_protocol(
        label_code, structures('R3m'), overrides={'reference': {'settings': {'max_force': 1e-6}}})
    _, node = run_get_node(builder)
    assert node.exit_status == LabelWorkChain.exit_codes.ERROR_NO_FRAME_LABELLED.status
    calc = node.called[0]
    assert calc.exit_status == ReferenceLabelCalculation.exit_codes.ERROR_NO_FRAME_DONE.status


def bad_builder(label_code, **structures_):
    return LabelWorkChain.get_builder_from_protocol(label_code, structures_)


def test_bad_inputs_fail_before_any_job(label_code):
    jobs_before = orm.QueryBuilder().append(orm.CalcJobNode).count()
    good = perovskite_polymorph('Ba', 'Ti', 'P4mm')
    overlapping = good.copy()
    overlapping.positions[0] = overlapping.positions[2] + [0.2, 0, 0]
    molecule = good.copy()
    molecule.pbc = False
    unknown = good.copy()
    unknown.symbols[0] = 'Po'
    cases = {
        'closer than the physical minimum': {'x': orm.StructureData(ase=overlapping)},
        'periodic boundary conditions are required': {'x': orm.StructureData(ase=molecule)},
        "species ['Po'] are not supported": {'x': orm.StructureData(ase=unknown)},
    }
    for message, structures_ in cases.items():
        with pytest.raises(ValueError, match=re.escape(message)):
            run_get_node(bad_builder(label_code, **structures_))
    with pytest.raises(ValueError, match='no structures were given'):
        run_get_node(bad_builder(label_code))
    with pytest.raises(ValueError, match='unknown labelling engine'):
        LabelWorkChain.get_builder_from_protocol(label_code, {'x': orm.StructureData(ase=good)}, engine='vasp6')
    builder = LabelWorkChain.get_builder_from_protocol(label_code, {'x': orm.StructureData(ase=good)})
    builder.reference.model = orm.Str('7net-omni')
    with pytest.raises(ValueError, match='unknown reference model'):
        run_get_node(builder)
    assert orm.QueryBuilder().append(orm.CalcJobNode).count() == jobs_before  # nothing was launched


def test_calcjob_validates_on_its_own(label_code):
    atoms = cubic_batio3()
    atoms.positions[1] = atoms.positions[0] + [0.1, 0, 0]
    with pytest.raises(ValueError, match='closer than the physical minimum'):
        run_get_node(ReferenceLabelCalculation, code=label_code, structures={'x': orm.StructureData(ase=atoms)})
    with pytest.raises(ValueError, match='no structures were given'):
        run_get_node(ReferenceLabelCalculation, code=label_code, structures={})


def test_energies_order_like_batio3(label_code):
    """The reference labeller ranks the polar phases below the cubic one (BaTiO3's instability)."""
    results, node = run_get_node(LabelWorkChain.get_builder_from_protocol(
        label_code, structures('R3m', 'Pm-3m')))
    ts = results['training_set']
    energies = dict(zip([o['frame_key'] for o in ts.origins], ts.energies))
    assert energies['R3m'] < energies['Pm_3m']
    assert np.isfinite(list(energies.values())).all()
