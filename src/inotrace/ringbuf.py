"""The BPF ring buffer, read straight from its mapping: libbpf's consumer
loop in Python, taking a batch of records per pass instead of one ctypes
callback per record (the callback was most of the cost of a drain).

The kernel's layout (kernel/bpf/ringbuf.c, as libbpf maps it): the consumer
position in the first page (ours to write), the producer position in the
next (read-only), then the data, mapped twice in a row so that a record that
wraps around the end reads as one piece. Each record starts with an 8-byte
header whose first word is its length, with a busy bit while the producer is
still writing it and a discard bit for one it gave up.

Positions are 8-byte aligned words read with single loads (x86-64 orders
them as the kernel's acquire/release pairs require).
"""

from __future__ import annotations

import ctypes
import mmap
import select
import struct

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HEADER = 8
_LEN = struct.Struct("I")  # native: one aligned 4-byte load


class RingReader:
    def __init__(self, map_fd: int, size: int) -> None:
        if size & (size - 1) or size % mmap.PAGESIZE:
            raise ValueError(f"ring buffer size {size} is not a power-of-two number of pages")
        page = mmap.PAGESIZE
        self._cons_map = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._prod_map = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._consumer = ctypes.c_uint64.from_buffer(self._cons_map)
        self._view = memoryview(self._prod_map)
        self._producer = self._view[:8].cast("Q")
        self._data = self._view[page:]
        self._mask = size - 1
        self._epoll = select.epoll()
        self._epoll.register(map_fd, select.EPOLLIN)

    def wait(self, timeout_ms: int) -> None:
        """Until the kernel wakes us (or timeout_ms): records are mostly
        submitted without a wake-up, so take() after a timeout too."""
        self._epoll.poll(timeout_ms / 1000)

    def take(self, limit: int) -> list[bytes]:
        """Up to `limit` whole records, oldest first; their space is given back."""
        out: list[bytes] = []
        cons = self._consumer.value
        prod = self._producer[0]
        data, mask, unpack = self._data, self._mask, _LEN.unpack_from
        while cons < prod and len(out) < limit:
            off = cons & mask
            (head,) = unpack(data, off)
            if head & BUSY_BIT:
                break  # still being written: it and what follows wait for the next pass
            n = head & ~(BUSY_BIT | DISCARD_BIT)
            if not head & DISCARD_BIT:
                out.append(bytes(data[off + HEADER : off + HEADER + n]))
            cons += (n + HEADER + 7) & ~7
            if cons >= prod:
                prod = self._producer[0]
        self._consumer.value = cons
        return out

    def reserved(self) -> int:
        """The producer position: the end of every record reserved so far."""
        return int(self._producer[0])

    def consumed(self) -> int:
        """The consumer position: the end of every record taken so far."""
        return int(self._consumer.value)

    def close(self) -> None:
        self._epoll.close()
        for view in (self._producer, self._data, self._view):
            view.release()
        del self._consumer  # releases its export of the consumer page
        self._cons_map.close()
        self._prod_map.close()
