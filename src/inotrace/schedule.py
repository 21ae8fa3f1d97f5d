"""When the tracer looks at the kernel: a sample every sample_interval (and
whenever a scrape asks), a full re-read of every watch every
reconcile_interval (0: never), and a sweep of the kernel side's
per-instance state every SWEEP_S."""

from __future__ import annotations

# How often the kernel side's per-instance state is swept of dead instances
# (those gone between two samples, never seen by one).
SWEEP_S = 10.0


class Schedule:
    def __init__(self, sample_interval: float, reconcile_interval: float) -> None:
        self.sample_interval = sample_interval
        self.reconcile_interval = reconcile_interval
        self._next_sample = 0.0
        self._next_full = reconcile_interval or float("inf")
        self._next_sweep = 0.0

    def sample_due(self, now: float) -> bool:
        return now >= self._next_sample or self.full_due(now)

    def full_due(self, now: float) -> bool:
        return now >= self._next_full

    def sampled(self, now: float, full: bool) -> None:
        """A sample ran (or failed: it waits the same interval, never a tight loop of errors)."""
        self._next_sample = now + self.sample_interval
        if full and self.reconcile_interval:
            self._next_full = now + self.reconcile_interval

    def sweep_due(self, now: float) -> bool:
        """True once per SWEEP_S."""
        if now < self._next_sweep:
            return False
        self._next_sweep = now + SWEEP_S
        return True
