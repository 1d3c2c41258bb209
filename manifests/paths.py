"""Saying in words why a path given on a command line cannot be used.

Shared by datagen (``--source``, ``--out``, source files) and training (``--data``) so that a file given
where a folder is expected, a path that does not exist, a symlink loop or an unreadable file each get
their own one-line message naming the path, instead of a misleading one ("split has no examples") or
libsndfile's "System error.".
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = ["PathError", "path_problem", "require_path"]

#: What a caller expects a path to be.
KINDS = ("folder", "file", "any")

_TYPE_NAMES = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
               stat.S_IFBLK: "a block device"}


class PathError(ValueError):
    """A path that cannot be used as given; the message names the path and the problem."""


def path_problem(path: str | os.PathLike, expect: str = "any") -> str | None:
    """Why ``path`` cannot be used as a ``expect`` ("folder", "file" or "any"), in a few words, or None.

    Checks, in order: a symlink loop or dangling symlink, a missing path (and whether its folder exists
    at all), a file where a folder is expected or the reverse, something that is not a regular file (a
    FIFO would block a reader forever, a device never ends), and read permission. Only ``stat`` and
    ``access`` are called: nothing is opened, so the check never blocks.
    """
    if expect not in KINDS:
        raise ValueError(f"expect must be one of {', '.join(KINDS)}, got {expect!r}")
    path = Path(path)
    try:
        info = os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "is a symlink loop"
        if error.errno == errno.EACCES:
            return "cannot be reached (permission denied on a folder above it)"
        if error.errno == errno.ENOTDIR:
            return "does not exist (a part of the path above it is a file, not a folder)"
        if error.errno != errno.ENOENT:
            return f"cannot be read ({os.strerror(error.errno or 0) or error})"
        if os.path.islink(path):
            return f"is a broken symlink (to {os.readlink(path)}, which does not exist)"
        parent = path.parent
        if str(parent) not in ("", ".") and not parent.exists():
            return f"does not exist (nor does its folder {parent})"
        return "does not exist"
    kind = stat.S_IFMT(info.st_mode)
    if expect == "folder" and kind != stat.S_IFDIR:
        return "is a file, not a folder" if kind == stat.S_IFREG else f"is {_TYPE_NAMES.get(kind, 'not a folder')}"
    if expect == "file":
        if kind == stat.S_IFDIR:
            return "is a folder, not a file"
        if kind != stat.S_IFREG:
            return f"is {_TYPE_NAMES.get(kind, 'not a regular file')}, not a regular file"
    wanted = os.R_OK | (os.X_OK if kind == stat.S_IFDIR else 0)
    if not os.access(path, wanted):
        return "is not readable (permission denied)"
    return None


def require_path(path: str | os.PathLike, expect: str = "any", what: str = "") -> Path:
    """``path`` as a Path when :func:`path_problem` finds nothing, else a :class:`PathError`.

    The message is one line: ``"--source /x/a.wav: is a file, not a folder"`` (``what`` names the flag).
    """
    problem = path_problem(path, expect)
    if problem is not None:
        raise PathError(f"{what + ' ' if what else ''}{path}: {problem}")
    return Path(path)
