"""Read (and tend) the program's maps at the moment they are asked for:
the ring, the counters, the per-instance state, the task_file iterator.
Maps are never cleared; only dead instances' state is deleted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from . import libbpf
from .records import COMM_LEN, LOST_MAX, CountKeyC, OpenKeyC
from .ringbuf import RingReader

ITERATOR = b"bpf_iter__task_file"  # the program that lists every inotify file


class Maps:
    """The maps of one compiled program (BCC's BPF object, given by Program)."""

    def __init__(self, bcc: Any, bpf: Any) -> None:
        self._bcc = bcc
        self.bpf = bpf
        self._ring: RingReader | None = None
        self._iter_link: int | None = None
        self._sweep: dict[int, int] = {}  # group -> gen: not live at the last sweep

    def open_ring(self) -> None:
        table = self.bpf[b"events"]
        self._ring = RingReader(table.map_fd, int(table.max_entries))

    def poll(self, timeout_ms: int, limit: int) -> list[bytes]:
        """Up to `limit` records: those waiting, else what comes within timeout_ms.

        A drain takes at most `limit`: a producer faster than us must not
        keep one drain going for ever while the main loop waits to turn.
        """
        assert self._ring is not None, "open_ring() first"
        got = self._ring.take(limit)
        if not got and timeout_ms:
            self._ring.wait(timeout_ms)
            got = self._ring.take(limit)
        return got

    def ring_reserved(self) -> int:
        """Where the ring's producer is now (see ringbuf.RingReader.reserved)."""
        assert self._ring is not None, "open_ring() first"
        return self._ring.reserved()

    def ring_consumed(self) -> int:
        assert self._ring is not None, "open_ring() first"
        return self._ring.consumed()

    def read_counts(self) -> list[tuple[CountKeyC, int]]:
        table = self.bpf[b"counts"]
        out = []
        for k, v in table.items():
            key = CountKeyC.from_buffer_copy(bytes(k))
            out.append((key, int(v.value)))
        return out

    def read_open_counts(self) -> list[tuple[OpenKeyC, int]]:
        """Every open counter: the hash's, then each slot's, summed over CPUs
        (successful syscall opens, where the build has slots). A key may be
        in both; whoever renders them adds them up."""
        rows = [(OpenKeyC.from_buffer_copy(bytes(k)), int(v.value)) for k, v in self.bpf[b"open_counts"].items()]
        try:
            slots, counts = self.bpf[b"open_slots"], self.bpf[b"open_slot_counts"]
        except KeyError:
            return rows  # built without slots (OPEN_SLOTS_PER_CPU 0)
        for k, slot in slots.items():
            rows.append((OpenKeyC.from_buffer_copy(bytes(k)), int(counts.sum(counts.Key(slot.value)).value)))
        return rows

    def set_trace_filter(self, pids: Iterable[int], uids: Iterable[int], comms: Iterable[bytes]) -> None:
        """What streamed opens must match (trace_allowed in the C); only the
        maps of the dimensions the build filters exist."""
        for name, keys in ((b"filter_pids", pids), (b"filter_uids", uids)):
            for key in keys:
                table = self.bpf[name]
                table[table.Key(key)] = table.Leaf(1)
        for comm in comms:
            table = self.bpf[b"filter_comms"]
            k = table.Key()
            k.comm = comm[: COMM_LEN - 1]  # as the kernel keeps it: 15 bytes and a NUL
            table[k] = table.Leaf(1)

    def mark_usermode_helpers(self, tgids: set[int]) -> None:
        """Seed the usermode-helper map with helpers that predate the probes."""
        table = self.bpf[b"umh"]
        words: dict[int, int] = {}
        for tgid in tgids:
            words[tgid // 64] = words.get(tgid // 64, 0) | 1 << (tgid % 64)
        for word, bits in words.items():
            table[table.Key(word)] = table.Leaf(table[table.Key(word)].value | bits)

    def read_lost(self, reasons: Iterable[int] = range(LOST_MAX)) -> list[int]:
        table = self.bpf[b"lost"]
        return [int(table.sum(table.Key(i)).value) for i in reasons]

    def forget_group(self, group: int, gen: int | None) -> None:
        """Delete a destroyed instance's state, unless a new lifetime replaced it."""
        table = self.bpf[b"gstate"]
        key = table.Key(group)
        try:
            if gen is None or table[key].gen == gen:
                del table[key]
        except KeyError:
            pass

    def sweep_groups(self, live: Callable[[int], bool]) -> None:
        """Delete the state of instances `live` does not know: those created
        and destroyed between two samples. Two sweeps apart, with the same gen,
        so an instance born since the last sample is never touched."""
        table = self.bpf[b"gstate"]
        now = {int(k.value): int(v.gen) for k, v in table.items() if not live(int(k.value))}
        for group, gen in now.items():
            if self._sweep.get(group) == gen:
                self.forget_group(group, gen)
        self._sweep = {g: gen for g, gen in now.items() if self._sweep.get(g) != gen}

    def read_instances(self) -> bytes:
        """Run the task_file iterator once: every inotify file in every fd table.

        Needs inotify's f_op, which the BPF side learns from the first
        inotify_init it sees (the start-up self-test makes one).
        """
        if self._iter_link is None:
            fn = self.bpf.load_func(ITERATOR, self._bcc.BPF.TRACING)
            self._iter_link = libbpf.iter_link(fn.fd)
        fd = libbpf.iter_open(self._iter_link)
        chunks = []
        try:
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks)

    def map_fill(self, name: str) -> tuple[int, int] | None:
        """(entries, capacity) of a BPF map; None if this build has no such map."""
        try:
            table = self.bpf[name.encode()]
        except KeyError:
            return None
        return len(table), int(table.max_entries)

    def close(self) -> None:
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._iter_link is not None:
            os.close(self._iter_link)
            self._iter_link = None
