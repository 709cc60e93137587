"""Writing files so that nothing a user saved is lost or half-written."""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager


@contextmanager
def atomic_write(path, mode: str = "wb", **open_args):
    """A file opened for writing whose contents replace `path` only if the block completes.

    The data goes to a temporary file in the same directory, is flushed to disk, and is
    renamed over `path` (through a symlink: over what it points to, keeping the link and the
    old file's permissions). A crash, a full disk or an exception leaves either the old file
    or the new one, never a half-written one, and no temporary file behind.
    """
    path = os.path.realpath(os.fspath(path))
    directory = os.path.dirname(path)
    temporary = os.path.join(directory, f".fastgd-{secrets.token_hex(8)}.tmp")
    # O_EXCL: never write through a file or link someone else put there; 0o666 & ~umask.
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                     | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as error:  # name the file the user asked for, not the temporary one
        raise type(error)(error.errno, error.strerror, path) from None
    try:
        try:  # a file written over another keeps that file's permissions
            os.chmod(temporary, os.stat(path).st_mode & 0o7777)
        except FileNotFoundError:
            pass
        with os.fdopen(fd, mode, **open_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX; Windows has no directory handles for this)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_output_path(path, inputs=()) -> None:
    """A ValueError, before any long work, if `path` cannot be a new file: its directory is
    missing, it is a directory, or it is one of the `inputs` (which writing would destroy).
    None and "-" (stdout) pass."""
    if path in (None, "-"):
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"cannot write {os.fspath(path)!r}: directory {directory!r} does not "
                         f"exist")
    if os.path.isdir(path):
        raise ValueError(f"cannot write {os.fspath(path)!r}: it is a directory")
    for other in inputs:
        if other not in (None, "-") and os.path.exists(other) and os.path.exists(path) \
                and os.path.samefile(path, other):
            raise ValueError(f"cannot write {os.fspath(path)!r}: it is the input file "
                             f"{os.fspath(other)!r}")
