"""Programs that CalcJobs of aiida-ferromlip execute on the remote computer (no AiiDA imports here)."""


def process_started_at() -> float:
    """When this process started (Unix time), from /proc: an engine's report counts its interpreter start-up and
    imports (seconds for torch) as the program's time, not as the time between jobs. ``time.time()`` where /proc is
    not there."""
    import os
    import time

    try:
        with open('/proc/self/stat') as handle:
            ticks = int(handle.read().rsplit(')', 1)[1].split()[19])  # field 22: start time in clock ticks after boot
        with open('/proc/stat') as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith('btime'))
        return boot + ticks / os.sysconf('SC_CLK_TCK')
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


def exit_now(main) -> None:
    """Run an engine's ``main`` and end the process as soon as it returns, without the interpreter's teardown.

    A process that has loaded torch (SevenNet-0, NequIP/Allegro) takes seconds to exit after its work is done —
    measured on the 2-core VM: 1.9-3.9 s for SevenNet-0 against 0.04-0.09 s with ``os._exit`` (docs/throughput.md)
    — and the job is not done, for the scheduler and the loop, until it has. Every engine writes its outputs through
    closed files before ``main`` returns, so nothing is lost: stdout/stderr and logging are flushed here, an exception
    prints its traceback and gives exit code 1, ``SystemExit`` keeps its code (argparse's errors, ``--help``)."""
    import logging
    import os
    import sys
    import traceback

    try:
        code = main()
    except SystemExit as stop:
        code = stop.code
    except BaseException:  # noqa: BLE001 — report as the interpreter would, then leave at once
        traceback.print_exc()
        code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
