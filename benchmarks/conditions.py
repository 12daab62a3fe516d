"""What else the machine was doing: the hypervisor's CPU steal during a benchmark.

On a shared VM the host may run other guests on this one's CPUs. The time it takes is counted
as *steal* in ``/proc/stat``; while it is high, timings of threads that need both CPUs (a
training thread plus a statistics worker) suffer more than single-threaded ones, so ratios
drift with it. The benchmarks print it next to their tables.
"""

from __future__ import annotations

from pathlib import Path


def _cpu_ticks() -> tuple[int, int]:
    """``(steal, total)`` jiffies of all CPUs so far (zeros where /proc/stat is missing)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return 0, 0
    ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
    return ticks[7], sum(ticks)


class Steal:
    """The share of CPU time the hypervisor took between construction and :meth:`share`."""

    def __init__(self) -> None:
        self._start = _cpu_ticks()

    def share(self) -> float:
        """Stolen jiffies over all jiffies since construction (0.0 when unknown)."""
        steal, total = _cpu_ticks()
        busy = total - self._start[1]
        return (steal - self._start[0]) / busy if busy > 0 else 0.0

    def describe(self) -> str:
        """A sentence for a benchmark's output."""
        return (
            f"CPU time taken by the hypervisor (steal) during the run: {self.share():.1%} "
            "(a shared VM; ratios of multi-threaded configurations degrade as it grows)."
        )
