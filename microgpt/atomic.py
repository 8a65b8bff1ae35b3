"""Atomic file writes: a reader sees the old file or the new one, never half of either.

The recipe: write to a temporary file in the same folder (so the final rename stays on one
filesystem), flush and fsync it, `os.replace` it over the target (atomic on POSIX and Windows),
then fsync the folder so the rename itself survives a power cut. If anything fails on the way,
the temporary file is removed and the old file is left untouched. `atomic_folder` does the same for a
folder of files written together (an export).

A process killed mid-write cannot remove its temporary file, so each one is named
`.<target>.<pid>.<random>.tmp` (the target's name cut short if it is long): `remove_stale_temps` deletes those whose writer is no longer alive
(the trainer calls it on its output folders when a run starts).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import psutil

_TEMP = re.compile(r"^\..+\.(?P<pid>\d+)\.[^.]+\.tmp$")
NAME_ROOM = 200  # bytes of the target's name a temporary name keeps: with the pid, the random part and the
# dots it stays within the 255 a file name may have, so any name the target may have works


def _temp_stem(target: Path) -> str:
    """`.<target's name>.<pid>.`, the name cut to NAME_ROOM bytes."""
    return f".{os.fsdecode(os.fsencode(target.name)[:NAME_ROOM])}.{os.getpid()}."


def _fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _final_mode(target: Path) -> int:
    """Keep an existing file's permissions; new files get rw-r--r-- (mkstemp alone would give rw-------)."""
    try:
        return target.stat().st_mode & 0o777
    except FileNotFoundError:
        return 0o644


def _refuse_special(target: Path) -> None:
    """A rename over a folder, device or FIFO would destroy it (run as root, /dev/full itself): OSError instead."""
    try:
        mode = target.stat().st_mode
    except OSError:  # nothing there yet (or no way to look): mkstemp says what is wrong, if anything
        return
    if not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, "not a regular file (a folder, device or FIFO); it is never replaced",
                      os.fspath(target))


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of `path` for writing; it replaces `path` only if the block succeeds.

    Use it for writers that want a file object, e.g. `with atomic_open(p) as f: np.savez(f, ...)`.
    """
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open only writes; got mode {mode!r}")
    target = Path(path)
    _refuse_special(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=_temp_stem(target), suffix=".tmp", dir=target.parent)
    except OSError as exc:  # a read-only or full folder: named by the file asked for, not the temporary one
        raise OSError(exc.errno, exc.strerror or str(exc), os.fspath(target)) from None
    encoding = None if "b" in mode else "utf-8"
    try:
        os.chmod(tmp_name, _final_mode(target))
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError) and exc.filename in (None, tmp_name):  # name the file the caller asked for
            raise OSError(exc.errno, exc.strerror or str(exc), os.fspath(target)) from None
        raise
    _fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace `path` with `data` in one step."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Replace `path` with UTF-8 `text` in one step."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Replace `path` with `obj` as indented JSON (the whole document is built before the file is touched)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary sibling folder to fill; only if the block succeeds does it become `path`, whole.

    Write each file in it with the functions above (each is fsync'd). A new or empty `path` is replaced in one
    rename. A folder with files in it cannot be swapped in one step on POSIX, so it is renamed aside, the new
    one renamed in, and the old one deleted: a reader sees the old folder or the new one (for an instant,
    none), never a mix. If anything fails, the temporary folder is deleted and `path` is as it was.
    """
    target = Path(path)
    stem = _temp_stem(target)
    tmp = Path(tempfile.mkdtemp(prefix=stem, suffix=".tmp", dir=target.parent))
    aside: Path | None = None
    try:
        os.chmod(tmp, 0o755)  # mkdtemp's folder is private (rwx------); an export is for others to read
        yield tmp
        _fsync_dir(tmp)
        if target.is_dir() and any(target.iterdir()):
            aside = Path(tempfile.mkdtemp(prefix=stem, suffix=".old", dir=target.parent))
            os.replace(target, aside)  # over the empty placeholder just made
        os.replace(tmp, target)
    except BaseException:
        if aside is not None and not target.exists():  # the new folder never arrived: the old one goes back
            os.replace(aside, target)
        shutil.rmtree(tmp, ignore_errors=True)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
        raise
    _fsync_dir(target.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


class LineFile:
    """A file that grows by whole lines (a log, a CSV, events): each `append` is all written or not at all.

    A full disk can take half of a write; the file is then cut back to where it was, so it never holds a
    torn line that the next append would glue onto. A file left with a torn last line by a process killed
    mid-write loses that part when it is opened again. A file deleted while open (its folder removed) is an
    error on the next append, not lines written into a file no one can reach. Errors name this file, not a
    file descriptor.
    """

    def __init__(self, path: str | os.PathLike[str], truncate: bool = False) -> None:
        self.path = Path(path)
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        self._fd = self._guard(os.open, self.path, flags, 0o644)
        # a log sent to /dev/null or a FIFO is written to as it is: no tail to mend, nothing to cut back or sync
        opened = os.fstat(self._fd)
        self._regular = stat.S_ISREG(opened.st_mode)
        self._counts_links = opened.st_nlink > 0  # a file system that reports no links at all is not watched
        if self._regular:
            try:
                self._guard(self._drop_torn_tail)
            except OSError:
                self.close(sync=False)
                raise

    def _guard(self, action: Any, *args: Any) -> Any:
        try:
            return action(*args)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, os.fspath(self.path)) from None

    def _drop_torn_tail(self) -> None:
        end = os.fstat(self._fd).st_size
        while end > 0:  # back from the end, 64 KiB at a time, to the last newline
            start = max(0, end - 65536)
            newline = os.pread(self._fd, end - start, start).rfind(b"\n")
            if newline >= 0:
                os.ftruncate(self._fd, start + newline + 1)
                return
            end = start
        os.ftruncate(self._fd, 0)  # not one whole line in the file

    @property
    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def append(self, text: str) -> None:
        """Append `text` (whole lines, ending in a newline); on failure the file is as it was."""
        data = memoryview(text.encode("utf-8", errors="backslashreplace"))
        start, written = 0, 0
        if self._regular:
            held = self._guard(os.fstat, self._fd)
            if held.st_nlink == 0 and self._counts_links:  # deleted (its folder too): lines would reach no one
                raise OSError(errno.ENOENT, "deleted while it was being written", os.fspath(self.path))
            start = held.st_size
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as exc:
            with contextlib.suppress(OSError):  # cut back only what this append wrote: another writer's line stays
                if self._regular and self.size == start + written:
                    os.ftruncate(self._fd, start)
            raise OSError(exc.errno, exc.strerror, os.fspath(self.path)) from None

    def close(self, sync: bool = True) -> None:
        """fsync (unless told not to) and close; a second call does nothing."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        try:
            if sync and self._regular:
                self._guard(os.fsync, fd)
        finally:
            os.close(fd)


def process_alive(pid: int, since: float | None = None) -> bool:
    """Whether process `pid` still runs: not gone, not a zombie (dead, waiting for its parent to collect it,
    which in a container whose first process never does is forever) and, when `since` (a time it was known
    to be running) is given, not a later process that the system handed the same pid."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return since is None or process.create_time() <= since + 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process: it exists
        return True
    except (OverflowError, ValueError):  # a pid no system hands out: from a damaged file
        return False


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that writers which have since died left in `folder`; return them."""
    removed: list[Path] = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:  # absent or unreadable: nothing of ours to clean
        return removed
    for path in entries:
        match = _TEMP.match(path.name)
        if match is None or int(match["pid"]) == os.getpid() or process_alive(int(match["pid"])):
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed
