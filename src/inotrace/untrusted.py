"""Strings chosen by traced processes (comm, paths): escaped and bounded.

A traced process controls its comm and the paths it passes; they reach a
terminal, a JSON log and Prometheus labels. Everything that is not a
printable character is escaped (``\\xNN``, ``\\uNNNN``), a backslash is
doubled so the escaping is unambiguous, and the result is cut at `limit`.
"""

from __future__ import annotations

import re
import unicodedata


def _escape_char(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    if ch.isprintable() or ch == " ":
        return ch
    cp = ord(ch)
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if unicodedata.category(ch) == "Cs" or cp <= 0xFFFF:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


# Printable ASCII but the backslash: what most comms and paths are made of,
# and what escaping leaves as it is.
_NEEDS_ESCAPE = re.compile(rb"[^\x20-\x5b\x5d-\x7e]")


def escape(raw: bytes, limit: int = 4096) -> tuple[str, bool]:
    """(escaped text, whether it was cut at `limit` characters)."""
    if not _NEEDS_ESCAPE.search(raw):  # nothing to escape: one scan in C, not a loop per character
        return raw[:limit].decode("ascii"), len(raw) > limit
    text = raw.decode("utf-8", errors="surrogateescape")
    out: list[str] = []
    size = 0
    for ch in text:
        # surrogateescape maps an undecodable byte b to U+DC00 + b
        piece = f"\\x{ord(ch) - 0xDC00:02x}" if 0xDC80 <= ord(ch) <= 0xDCFF else _escape_char(ch)
        if size + len(piece) > limit:
            return "".join(out), True
        out.append(piece)
        size += len(piece)
    return "".join(out), False


def escape_text(raw: bytes, limit: int = 4096) -> str:
    return escape(raw, limit)[0]


# A comm is at most 15 bytes; escaped (\xNN per byte at worst), 64 holds any.
COMM_TEXT_MAX = 64


def comm_text(raw: bytes) -> str:
    """A process name as a label value or a log field."""
    return escape_text(raw, COMM_TEXT_MAX)
