"""`GET /api/v1/watches?pid=N[&top=K]`: what one process watches, as JSON.

The model knows which instances a process owns; their watches are read
from fdinfo and their paths from the file handles there (paths.watched_by),
at request time: paths are never metric labels (unbounded), and the model
keeps none. Bounded every way a client could push it: one request at a time
(429 otherwise), at most TOP_MAX prefixes, RESOLVE_LIMIT paths resolved
(the rest counted as not resolved), paths escaped and cut (paths.shown).
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from .paths import watched_by, watched_rows
from .watched import DEFAULT_TOP

if TYPE_CHECKING:
    from .tracer import Tracer

PATH = "/api/v1/watches"
TOP_MAX = 100
RESOLVE_LIMIT = 200_000  # ~9 us each: about 2 s of one core at most

Answer = tuple[str, dict[str, Any]]  # HTTP status line, JSON body


class BadRequest(ValueError):
    pass


def _int_arg(query: dict[str, list[str]], name: str, default: int | None, low: int, high: int) -> int:
    values = query.get(name)
    if not values:
        if default is None:
            raise BadRequest(f"{name} is required")
        return default
    text = values[0]
    if not text.isdigit() or not low <= int(text) <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}")
    return int(text)


class WatchesAPI:
    """Answers from the tracer once serving has started (503 before)."""

    def __init__(self, procfs: str, watch_cost: int | None) -> None:
        self.procfs = procfs
        self.watch_cost = watch_cost
        self.tracer: Tracer | None = None
        self._one = threading.Lock()

    def answer(self, method: str, query_string: str) -> Answer:
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", {"error": "GET only"}
        try:
            query = parse_qs(query_string, max_num_fields=8)
            pid = _int_arg(query, "pid", None, 1, 1 << 22)
            top = _int_arg(query, "top", DEFAULT_TOP, 0, TOP_MAX)
        except (BadRequest, ValueError) as e:
            return "400 Bad Request", {"error": str(e)}
        if self.tracer is None:
            return "503 Service Unavailable", {"error": "not ready: the probes are being attached"}
        if not self._one.acquire(blocking=False):
            return "429 Too Many Requests", {"error": f"another {PATH} request is being answered"}
        try:
            return self._watches(self.tracer, pid, top)
        finally:
            self._one.release()

    def _watches(self, tracer: Tracer, pid: int, top: int) -> Answer:
        with tracer.lock:
            mine = [i for i in tracer.accounting.instances.values() if i.owner == pid]
            held = [i.holders for i in mine]
            uid = mine[0].uid if mine else -1
            count = sum(i.count for i in mine)
            comm = tracer.comm_of(pid) if mine else ""  # the comm cache is the main loop's: under its lock
        if not mine:
            return "404 Not Found", {"error": f"pid {pid} owns no inotify instance (as of the last sample)"}
        found = watched_by(self.procfs, pid, held, top, RESOLVE_LIMIT)
        body: dict[str, Any] = {
            "pid": pid,
            "comm": comm,
            "uid": uid,
            "instances": len(mine),
            "watches": count,
            "watched": {**watched_rows(found.watched), "not_resolved": found.not_resolved},
            "read_from_fdinfo": found.watches,
            "paths_from": "file handles (fdinfo, open_by_handle_at)",
        }
        if self.watch_cost is not None:
            body["watch_memory_bytes"] = count * self.watch_cost
        return "200 OK", body

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        status, body = self.answer(environ.get("REQUEST_METHOD", "GET"), environ.get("QUERY_STRING", ""))
        data = (json.dumps(body, indent=1) + "\n").encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [data]
