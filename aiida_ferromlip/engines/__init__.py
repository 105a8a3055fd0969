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
