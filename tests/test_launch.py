"""``aiida_ferromlip.launch``: what the run scripts and ``ferromlip loop continue`` launch with."""

import time

from aiida import orm
from aiida.engine import WorkChain, calcfunction

from aiida_ferromlip import launch


@calcfunction
def incremented(value: orm.Int) -> orm.Int:
    return orm.Int(value.value + 1)


class Child(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('value', valid_type=orm.Int)
        spec.output('value', valid_type=orm.Int)
        spec.outline(cls.run_it)

    def run_it(self):
        self.out('value', incremented(self.inputs.value))


class Parent(Child):
    """Waits for a child it submitted, as the loop waits for its jobs and sub-work chains."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(cls.submit_child, cls.collect)

    def submit_child(self):
        return self.to_context(child=self.submit(Child, value=self.inputs.value))

    def collect(self):
        # called back on the child's end: its node already says so (the loop reads is_finished_ok right here)
        assert self.ctx.child.is_finished_ok and self.ctx.child.is_sealed
        self.out('value', self.ctx.child.outputs.value)


def test_a_waiting_work_chain_goes_on_when_its_child_ends_not_at_the_next_poll(aiida_profile):
    """With aiida's polling once a minute, only the runner's own notice of the child's end lets the parent finish
    within seconds (polling alone: the child is not done at the first check, the next one is 60 s later)."""
    from aiida.manage import get_manager

    runner = launch.event_runner(get_manager(), poll_interval=60)
    start = time.monotonic()
    results, node = runner.run_get_node(Parent, value=orm.Int(2))
    assert node.is_finished_ok and results['value'].value == 3
    assert time.monotonic() - start < 20


def test_a_work_chain_run_here_gets_its_childs_result(aiida_profile):
    results, node = launch.run_get_node(Parent, value=orm.Int(2))
    assert node.is_finished_ok and results['value'].value == 3
    child = node.called[0]
    assert child.process_class is Child and child.is_finished_ok
    builder = Parent.get_builder()
    builder.value = orm.Int(5)
    assert launch.run_get_node(builder)[0]['value'].value == 6  # a builder too
    assert launch.run_get_node(incremented, value=orm.Int(7))[0].value == 8  # and a process function
