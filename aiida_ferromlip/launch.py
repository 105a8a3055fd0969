"""Run a process here, in this Python process (``verdi run``), and learn of its sub-processes' ends promptly.

``aiida.engine.run_get_node`` runs a process in a runner without a broker connection, so a work chain learns that a
sub-process it waits for has finished by polling that process's node every ``runner.poll.interval`` seconds — an
integer profile option, 1 s in a ``verdi presto`` profile (0 polls without any pause and takes a core). Every wait of
a loop's work chains (a job in its restart wrapper, the wrapper in the loop, a labelling job in its LabelWorkChain,
the card's jobs in the card, ...) then ends on average half a second after the sub-process did, and an iteration of
the `fast` loop has a dozen or more such waits one after the other (docs/throughput.md, stop 40). This runner polls
every ``POLL_INTERVAL_S`` instead: a check is one database read of the node's state (0.3 ms on the SQLite profile),
so even a hundred waiting processes cost a few per cent of one core. A daemon (``submit``) is not affected: its
runner hears of a process's end from the broker.
"""
from __future__ import annotations

import typing as t

#: seconds between two checks of a waited-for sub-process (aiida's own default for ``verdi run``: 1 s)
POLL_INTERVAL_S = 0.2


def run_get_node(process, inputs: dict[str, t.Any] | None = None, **kwargs: t.Any):
    """As ``aiida.engine.run_get_node`` (outputs and node of ``process``, a class, builder or process function),
    in a runner that checks waited-for sub-processes every ``POLL_INTERVAL_S``."""
    from aiida.engine import Process
    from aiida.manage import get_manager

    if isinstance(process, Process):
        return process.runner.run_get_node(process, inputs, **kwargs)
    runner = get_manager().create_runner(communicator=None, poll_interval=POLL_INTERVAL_S)
    return runner.run_get_node(process, inputs, **kwargs)
