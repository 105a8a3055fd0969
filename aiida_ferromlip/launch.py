"""Run a process here, in this Python process (``verdi run``), and let a work chain go on as soon as what it waits for ends.

``aiida.engine.run_get_node`` runs a process in a runner without a broker connection, so a work chain learns that a
sub-process it waits for (``ToContext``) has finished only by polling that process's node every
``runner.poll.interval`` seconds — an integer profile option, 1 s in a ``verdi presto`` profile (0 polls without any
pause and takes a core). Every wait of a loop's work chains (a job in its restart wrapper, the wrapper in the loop, a
labelling job in its LabelWorkChain, the card's jobs in the card, ...) then ended on average half a second after the
sub-process did, and an iteration of the `fast` loop has a dozen or more such waits one after the other
(docs/throughput.md, stop 40).

Here every process runs in this one runner (the sub-processes a work chain submits too), so the runner knows when one
ends: ``EventRunner`` hooks the end of each process it instantiates (the process's future, which plumpy resolves in
the transition to a terminal state; its callbacks run on the event loop after that transition, node state and seal
included) and calls the waiters of that process then. aiida's own polling stays as the fail-safe at the profile's
interval, so nothing polls more often than before. A daemon (``submit``) is not affected: its runner hears of a
process's end from the broker.
"""
from __future__ import annotations

import typing as t

from aiida.engine.runners import Runner


class EventRunner(Runner):
    """A runner that calls the waiters of a process it runs when that process ends, not at the next poll."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._waiters: dict[int, list[t.Callable[[], t.Any]]] = {}

    def instantiate_process(self, process, **inputs):
        process = super().instantiate_process(process, **inputs)
        pid = process.pid
        process.future().add_done_callback(lambda _future: self._ended(pid))
        return process

    def _ended(self, pid: int) -> None:
        for waiter in self._waiters.pop(pid, []):
            waiter()

    def call_on_process_finish(self, pk: int, callback: t.Callable[[], t.Any]) -> None:
        called = []

        def once():
            if not called:
                called.append(True)
                callback()

        self._waiters.setdefault(pk, []).append(once)
        super().call_on_process_finish(pk, once)  # aiida's polling: the fail-safe (a process run elsewhere)


def run_get_node(process, inputs: dict[str, t.Any] | None = None, **kwargs: t.Any):
    """As ``aiida.engine.run_get_node`` (outputs and node of ``process``, a class, builder or process function), in
    an ``EventRunner``."""
    from aiida.engine import Process
    from aiida.manage import get_manager

    if isinstance(process, Process):
        return process.runner.run_get_node(process, inputs, **kwargs)
    return event_runner(get_manager()).run_get_node(process, inputs, **kwargs)


def event_runner(manager, poll_interval: float | None = None) -> EventRunner:
    """An ``EventRunner`` with the settings ``manager.create_runner`` gives a ``verdi run`` (no broker connection,
    the profile's persister); ``poll_interval``: the fail-safe polling interval (default: the profile's)."""
    interval = manager.get_option('runner.poll.interval') if poll_interval is None else poll_interval
    return EventRunner(poll_interval=interval, communicator=None, broker_submit=False,
                       persister=manager.get_persister())
