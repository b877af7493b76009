"""Names that become paths: the one validator for every name joined to the home or another root.

Model names, report names, audit logs, artifact paths: anything that arrives from the command line,
a config file or the registry and ends up in a file name goes through :func:`safe_name` (one path
segment) or :func:`safe_relpath` (a relative path of safe segments), and the joined path through
:func:`within`, which resolves symlinks and refuses anything that lands outside the root::

    path = within(home.root, home.root / "audit" / f"{safe_name(model, 'model name')}.jsonl")

The rules are an allowlist, so encodings of a traversal (``%2e%2e``, ``..\\``, NUL, a URL fragment)
are refused because of the characters they need, not recognised one by one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

MAX_NAME = 128
MAX_SEGMENTS = 16
# A letter or digit first (no '.', so no '..' and no hidden files), then letters, digits, . _ - +.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
ALLOWED = (f"allowed: 1-{MAX_NAME} characters: letters, digits, '.', '_', '-', '+', starting with a letter "
           "or digit (no '/', '\\', '..', '%', '#', NUL, spaces)")


class UnsafeNameError(ValueError):
    """A name or path that would read or write outside its root."""


def _why(value: str) -> str:
    if not value:
        return "it is empty"
    if "\x00" in value:
        return "it contains NUL"
    if len(value) > MAX_NAME:
        return f"it is {len(value)} characters long"
    if ".." in value:
        return "it contains '..'"
    if "/" in value or "\\" in value:
        return "it contains a path separator"
    if "%" in value:
        return "it contains '%' (percent-encoding)"
    if "#" in value:
        return "it contains '#' (a URL fragment)"
    return "it contains a character outside the allowed set"


def safe_name(value: str, what: str = "name") -> str:
    """`value` if it is one safe path segment; else UnsafeNameError naming it and what is allowed."""
    if not isinstance(value, str) or len(value) > MAX_NAME or not _NAME.fullmatch(value) or ".." in value:
        shown = repr(value[:80]) if isinstance(value, str) else repr(value)
        raise UnsafeNameError(f"{what} {shown} is refused: {_why(str(value))}; {ALLOWED}")
    return value


def safe_relpath(value: str, what: str = "artifact path") -> str:
    """`value` if it is a relative path of safe segments joined by '/' (no absolute path, no '..')."""
    if not isinstance(value, str) or not value:
        raise UnsafeNameError(f"{what} {value!r} is refused: it is empty; a relative path of '/'-separated "
                              f"segments, each {ALLOWED}")
    parts = value.split("/")
    if len(parts) > MAX_SEGMENTS:
        raise UnsafeNameError(f"{what} {value[:80]!r} is refused: more than {MAX_SEGMENTS} segments")
    for part in parts:
        try:
            safe_name(part, "segment")
        except UnsafeNameError as exc:
            raise UnsafeNameError(f"{what} {value[:80]!r} is refused: {exc}") from None
    return value


def within(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """`path` resolved (symlinks followed), if it is `root` or below it; else UnsafeNameError."""
    base = Path(root).resolve()
    resolved = Path(path).resolve()
    if resolved != base and base not in resolved.parents:
        raise UnsafeNameError(f"{path} resolves to {resolved}, outside {base}: refused (a symlink or '..' "
                              "leads out of it)")
    return resolved


def child(root: str | os.PathLike, *names: str, what: str = "name", suffix: str = "") -> Path:
    """root/<name>/.../<last name><suffix>, each name checked by safe_name, the result by within."""
    checked = [safe_name(n, what) for n in names]
    checked[-1] += suffix
    return within(root, Path(root).joinpath(*checked))
