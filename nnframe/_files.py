"""The one way nnframe opens a file it reads whole, and the one way it writes one.

Reading (`read_regular`): the path is opened once, without following the open into a
blocking device (``O_NONBLOCK``, so a FIFO with no writer does not hang), checked with
``fstat`` on that same descriptor to be a regular file no larger than the caller's cap, and
only then read. ``/dev/zero``, a FIFO, a socket or a directory behind a ``.pkl`` or image
name is refused at once, whatever symlink leads there.

Writing (`atomic_write`): a temporary file with a short name in the target's directory,
created with mode ``0o666`` so the kernel applies the umask (as ``open`` would), given the
mode of the file it replaces if there is one, fsynced, then renamed over the target. A crash
or a full disk never damages the previous file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from .errors import NNFrameError

_READ_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
               | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
_WRITE_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
                | getattr(os, "O_BINARY", 0))


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_regular(path: str | os.PathLike, *, limit: int, what: str,
                 error: type[NNFrameError]) -> bytes:
    """The bytes of the regular file at ``path``, at most ``limit`` of them.

    Raises ``error`` (naming ``what``, e.g. "model file") when the path is missing, is not a
    regular file, is larger than ``limit`` or cannot be read.
    """
    shown = repr(str(path))
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        raise error(f"no {what} at {shown}; check the path.") from None
    except OSError as exc:
        raise error(f"cannot read {shown}: {exc.strerror or exc}.") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{shown} is {_kind(info.st_mode)}, not a regular file; nnframe reads "
                        f"{what}s only from regular files.")
        if info.st_size > limit:
            raise error(f"{shown} is {info.st_size:,} bytes, over the {limit:,}-byte limit for "
                        f"{what}s; it was not read.")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 24, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise error(f"cannot read {shown}: {exc.strerror or exc}.") from None
    finally:
        os.close(fd)
    if size > limit:  # it grew while being read
        raise error(f"{shown} grew past {limit:,} bytes while being read; it was not used.")
    return b"".join(chunks)


def atomic_write(path: Path, data: bytes, *, error: type[NNFrameError]) -> None:
    """Replace ``path`` with ``data`` atomically (see the module docstring).

    Raises ``error`` when the directory is missing or the write fails; any previous file at
    ``path`` is then unchanged.
    """
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise error(f"cannot save to {str(path)!r}: the directory {str(directory)!r} does not "
                    "exist; create it first.")
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = None  # a new file: 0o666 less the umask, applied by the kernel on create
    tmp, fd = None, -1
    try:
        for _ in range(100):
            # A short name: any legal target name stays legal for its temporary file.
            tmp = directory / f".nnf{secrets.token_hex(4)}.tmp"
            try:
                fd = os.open(tmp, _WRITE_FLAGS, 0o666)
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover - 100 collisions of 32 random bits
            raise FileExistsError(f"no free temporary name in {directory}")
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise error(f"could not save to {str(path)!r}: {exc}. Any previous file there is "
                    "unchanged.") from exc
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
