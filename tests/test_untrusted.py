"""Escaping and bounding of strings chosen by traced processes."""

from __future__ import annotations

from inotrace.names import INOTIFY_MASK_BITS, bit_names, errno_name
from inotrace.untrusted import escape, escape_text


def test_plain_text_is_unchanged() -> None:
    assert escape(b"/home/user/proj file.txt") == ("/home/user/proj file.txt", False)
    assert escape_text("café/日本".encode()) == "café/日本"


def test_control_and_terminal_escapes_are_neutralised() -> None:
    assert escape_text(b"a\nb\tc\x1b[31mred\x7f") == "a\\x0ab\\x09c\\x1b[31mred\\x7f"


def test_backslash_is_doubled_so_escaping_is_unambiguous() -> None:
    assert escape_text(b"a\\x0a") == "a\\\\x0a"


def test_invalid_utf8_bytes_are_escaped() -> None:
    assert escape_text(b"ok\xff\xfe") == "ok\\xff\\xfe"


def test_unicode_format_and_bidi_controls_are_escaped() -> None:
    assert escape_text("a\u202eb\u200bc".encode()) == "a\\u202eb\\u200bc"


def test_bound_is_applied_after_escaping() -> None:
    assert escape(b"x" * 10, limit=4) == ("xxxx", True)
    assert escape(b"\n\n\n", limit=9) == ("\\x0a\\x0a", True)
    assert escape(b"abcd", limit=4) == ("abcd", False)


def test_errno_names() -> None:
    assert errno_name(28) == "ENOSPC"
    assert errno_name(24) == "EMFILE"
    assert errno_name(4095) == "unknown:4095"


def test_bit_names() -> None:
    assert bit_names(0x80000102, INOTIFY_MASK_BITS) == ["IN_MODIFY", "IN_CREATE", "IN_ONESHOT"]
    assert bit_names(0x1001, INOTIFY_MASK_BITS) == ["IN_ACCESS", "0x1000"]
