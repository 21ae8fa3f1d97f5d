"""What a process watches, aggregated: the directory prefixes holding the most watches.

A recursive watcher holds one watch per directory, tens of thousands of them;
the operator wants "48,211 under /home/u/proj/node_modules", not the list. The
paths come from the caller (file handles in `snapshot`); a watch whose path
cannot be told for sure is counted as unknown, never guessed.

A prefix's count is every watch at or below it. Prefixes a single chain passes
through (/home, /home/u above the one project watched) add nothing and are
not candidates: a candidate is watched itself or has two or more watched
branches below it (but "/" only if it is watched). Counts nest (a prefix includes its listed sub-prefixes).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

DEFAULT_TOP = 10


@dataclass
class _Node:
    watched: int = 0  # watches on this very path (a path can be watched by several instances)
    total: int = 0  # watches at or below it
    children: dict[str, _Node] = field(default_factory=dict)


@dataclass(frozen=True)
class Prefix:
    path: str
    watches: int


@dataclass(frozen=True)
class Watched:
    prefixes: tuple[Prefix, ...]  # by watches, most first; ties by path
    unknown: int  # watches whose path could not be told


def aggregate(paths: Iterable[str | None], top: int = DEFAULT_TOP) -> Watched:
    """The `top` prefixes by watch count, from one path (or None) per watch."""
    root, unknown = _Node(), 0
    for path in paths:
        if path is None or not path.startswith("/"):
            unknown += 1
            continue
        _insert(root, [p for p in path.split("/") if p])
    ranked = sorted(_candidates(root, ""), key=lambda p: (-p.watches, p.path))
    return Watched(prefixes=tuple(ranked[: max(top, 0)]), unknown=unknown)


def _insert(root: _Node, parts: list[str]) -> None:
    node = root
    node.total += 1
    for part in parts:
        node = node.children.setdefault(part, _Node())
        node.total += 1
    node.watched += 1


def _candidates(root: _Node, base: str) -> list[Prefix]:
    out: list[Prefix] = []
    stack = [(root, base)]
    while stack:  # not recursive: a hostile tree may be thousands of levels deep
        node, path = stack.pop()
        # "/" with branches below is every watch: the process's total says that already
        if node.watched or (len(node.children) > 1 and node is not root):
            out.append(Prefix(path or "/", node.total))
        stack.extend((child, f"{path}/{name}") for name, child in node.children.items())
    return out
