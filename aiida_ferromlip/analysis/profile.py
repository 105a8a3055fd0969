"""Where a loop's wall time goes: time intervals and the machine's CPU use (no AiiDA).

The loop profile (``workflows/loop/after_loop.loop_profile``, ``benchmarks/loop_profile.py``) splits a loop's wall time
by stage; per stage it needs the union of time intervals (processes and programs overlap) and the mean CPU
utilisation of the machine while the stage ran, sampled from ``/proc/stat`` by :class:`CpuSampler`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable

Interval = tuple[float, float]


def merged(intervals: Iterable[Interval]) -> list[Interval]:
    """The union of ``intervals`` as sorted, disjoint intervals."""
    out: list[list[float]] = []
    for begin, end in sorted(i for i in intervals if i[1] > i[0]):
        if out and begin <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([begin, end])
    return [(b, e) for b, e in out]


def covered(intervals: Iterable[Interval]) -> float:
    """Total length of the union of ``intervals`` (s)."""
    return sum(end - begin for begin, end in merged(intervals))


def intersection(intervals: Iterable[Interval], within: Iterable[Interval]) -> list[Interval]:
    """The parts of ``intervals`` inside the union of ``within``."""
    windows = merged(within)
    out = []
    for begin, end in merged(intervals):
        for low, high in windows:
            if min(end, high) > max(begin, low):
                out.append((max(begin, low), min(end, high)))
    return out


def gaps(intervals: Iterable[Interval], window: Interval) -> list[Interval]:
    """The parts of ``window`` that no interval of ``intervals`` covers, in order."""
    out, cursor = [], window[0]
    for begin, end in merged(intervals):
        if begin > cursor:
            out.append((cursor, min(begin, window[1])))
        cursor = max(cursor, end)
        if cursor >= window[1]:
            break
    if cursor < window[1]:
        out.append((cursor, window[1]))
    return [(b, e) for b, e in out if e > b]


def iteration_of(label: str) -> int | None:
    """The iteration a loop's call link label names as ``<stage>_<nnn>`` (``fit_002``, ``sample_002_R3m``,
    ``label_002_card``); None for the processes outside the iterations (``label_seed``, ``start_at_equilibrium``)."""
    match = re.match(r'^[a-z]+_(\d{3})(?:_|$)', label)
    return int(match.group(1)) if match else None


def iteration_spans(children: Iterable[tuple[str, float, float]]) -> dict[int, Interval]:
    """Per iteration, from the first of its processes' start to the last one's end; ``children`` are a loop's
    ``(call link label, start, end)``."""
    spans: dict[int, list[float]] = {}
    for label, begin, end in children:
        iteration = iteration_of(label)
        if iteration is not None:
            span = spans.setdefault(iteration, [begin, end])
            span[0], span[1] = min(span[0], begin), max(span[1], end)
    return {iteration: (b, e) for iteration, (b, e) in sorted(spans.items())}


def mean_busy(samples: list[tuple[float, float]], within: Iterable[Interval]) -> float | None:
    """Mean of the CPU samples ``(time, busy fraction)`` that fall inside ``within``; None without any."""
    windows = merged(within)
    values = [busy for moment, busy in samples if any(low <= moment <= high for low, high in windows)]
    return sum(values) / len(values) if values else None


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all cores from /proc/stat."""
    with open('/proc/stat') as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


class _Sampler:
    """A thread that runs ``_run`` (appending ``(time.time(), value)`` to ``samples`` every ``interval`` s until
    stopped) for the time of a ``with`` block."""

    def __init__(self, interval: float):
        self.interval = interval
        self.samples: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        raise NotImplementedError

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False


class CpuSampler(_Sampler):
    """Samples the machine's CPU utilisation (all cores, 0-1) every ``interval`` s in a thread; use as a context
    manager, then read ``samples``: ``[(time.time(), busy fraction since the previous sample)]``."""

    def __init__(self, interval: float = 0.5):
        super().__init__(interval)

    def _run(self):
        busy, total = _cpu_times()
        while not self._stop.wait(self.interval):
            new_busy, new_total = _cpu_times()
            if new_total > total:
                self.samples.append((time.time(), (new_busy - busy) / (new_total - total)))
            busy, total = new_busy, new_total


class StackSampler(_Sampler):
    """Samples what one thread (default: the one that made the sampler — the engine's, in ``verdi run``) is doing
    every ``interval`` s, from a second thread: ``samples`` are ``(time.time(), label)``, the label the place in the
    code (``what_it_does``). Answers where the engine's process spends a loop's stretches with no program running;
    the sampler takes the GIL ``1/interval`` times a second, a few microseconds each."""

    def __init__(self, interval: float = 0.05, thread_id: int | None = None):
        super().__init__(interval)
        self.thread_id = thread_id or threading.get_ident()

    def _run(self):
        import sys

        while not self._stop.wait(self.interval):
            frame = sys._current_frames().get(self.thread_id)
            if frame is not None:
                self.samples.append((time.time(), what_it_does(_stack(frame))))


def _stack(frame) -> list[tuple[str, str]]:
    """``(module path, function)`` of every frame, outermost first."""
    out = []
    while frame is not None:
        out.append((frame.f_code.co_filename, frame.f_code.co_name))
        frame = frame.f_back
    return out[::-1]


def what_it_does(stack: list[tuple[str, str]]) -> str:
    """One label for a stack (outermost frame first): ``idle`` when the event loop waits for something to happen;
    else the outermost and innermost frames of this package (a work chain's step and what it called: a calcfunction,
    a parser), or, outside the package, the engine's innermost own function (a job's upload, a scheduler poll);
    ``(database)`` added when the database is being written or read. The package's runner (``launch.py``) counts as
    the engine's."""
    innermost = stack[-1] if stack else ('', '')
    if innermost[1] in ('select', 'poll', 'epoll') and 'selectors' in innermost[0]:
        return 'idle'
    # the package's runner (launch.py) is process management, the engine's part, not a step of ours
    ours = [name for path, name in stack
            if '/aiida_ferromlip/' in path and not path.endswith('/aiida_ferromlip/launch.py')]
    engine = [name for path, name in stack if '/aiida/' in path and ('/engine/' in path or '/orm/' in path)]
    database = any('/sqlalchemy/' in path or 'sqlite' in path for path, _ in stack)
    if ours:
        label = ours[0] if len(ours) == 1 else f'{ours[0]} > {ours[-1]}'
    elif engine:
        label = f'aiida: {engine[-1]}'
    else:
        label = f'{innermost[0].rsplit("/", 1)[-1]}: {innermost[1]}'
    return label + (' (database)' if database else '')


def time_by_label(samples: list[tuple[float, str]], within: Iterable[Interval], interval: float) -> list[tuple[str, float]]:
    """Seconds per label (samples x interval) of the samples inside ``within``, largest first."""
    windows = merged(within)
    totals: dict[str, float] = {}
    for moment, label in samples:
        if any(low <= moment <= high for low, high in windows):
            totals[label] = totals.get(label, 0.0) + interval
    return sorted(totals.items(), key=lambda item: -item[1])
