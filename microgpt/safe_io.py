"""Opening a path someone else chose: regular files only, and never more bytes than the caller allows.

A FIFO would block `open()` forever, /dev/zero would feed `read()` until memory runs out, and a folder
fails in a different way on every OS. `open_regular` opens without blocking, checks what the path is,
and raises an OSError whose `strerror` says what is wrong, so every loader reports it in its usual one line.
`writable_folder` and `writable_file` are the same idea for outputs: prove the place takes a new file
before the work starts.

Content gets the same treatment before it is believed: `parse_json` bounds nesting depth, and
`inspect_npz` checks an .npz archive's members (their declared sizes against the file's size, each .npy
header's shape and dtype against the bytes that follow it) before a single array is read, so neither a
zip bomb nor a header that claims 373 GiB gets as far as an allocation.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from microgpt.errors import ConfigError, shown


class NotRegularFileError(OSError):
    """The path is a FIFO, a device or a socket: something that is not a file of bytes on disk."""


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open `path` for binary reading if it is a regular file; IsADirectoryError or NotRegularFileError if not."""
    nonblocking = getattr(os, "O_NONBLOCK", 0)  # POSIX: a FIFO opens at once instead of waiting for a writer
    fd = os.open(path, os.O_RDONLY | nonblocking)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", os.fspath(path))
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(errno.EINVAL, "not a regular file (a FIFO, device or socket)", os.fspath(path))
        if nonblocking:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def read_capped(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The whole of a regular file that is at most `max_bytes` long; OSError (EFBIG) when it is longer."""
    with open_regular(path) as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise OSError(errno.EFBIG, f"larger than the {max_bytes:,}-byte limit", os.fspath(path))
    return data


def writable_folder(knob: str, folder: str | os.PathLike[str], value: str | os.PathLike[str] | None = None) -> Path:
    """Create `folder` if needed and prove a file can be created in it; ConfigError naming `knob` if not.

    `value` is what the user gave when `folder` is only derived from it (the folder of an output file).
    """
    path = Path(folder)
    label = f"{knob}={shown(os.fspath(folder if value is None else value), 120)}"
    where = "" if value is None else f"its folder {shown(os.fspath(folder), 120)} "
    try:
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{label}: {where}is not a folder; give a folder path")
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".microgpt-probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise ConfigError(f"{label}: cannot write {where or 'there '}({getattr(exc, 'strerror', None) or exc}); "
                          "give a place you can write to") from None
    return path


def creatable_folder(knob: str, folder: str | os.PathLike[str], value: str | os.PathLike[str] | None = None) -> Path:
    """Check, creating nothing, that `folder` is a folder that takes files or could be made one: its nearest
    existing ancestor is a folder this process may write in. ConfigError naming `knob` if not."""
    path = Path(folder)
    label = f"{knob}={shown(os.fspath(folder if value is None else value), 120)}"
    existing = next(p for p in (path, *path.absolute().parents) if os.path.lexists(p))
    if not existing.is_dir():
        raise ConfigError(f"{label}: {shown(os.fspath(existing), 120)} is not a folder; give a folder path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{label}: cannot write in {shown(os.fspath(existing), 120)}; give a place you can write to")
    return path


MAX_NAME_BYTES = 255  # the longest file or folder name the common file systems take


def check_name_length(label: str, path: Path) -> None:
    """ConfigError unless the last part of `path` fits in a file name."""
    if len(os.fsencode(path.name)) > MAX_NAME_BYTES:
        raise ConfigError(f"{label}: its name is {len(os.fsencode(path.name))} bytes, more than {MAX_NAME_BYTES}; "
                          "give a shorter one")


def writable_file(knob: str, path: str | os.PathLike[str], example_name: str) -> Path:
    """A path a file can be written to: not a folder, not a device or FIFO, in a folder that takes new files."""
    target = Path(path)
    label = f"{knob}={shown(os.fspath(path), 120)}"
    check_name_length(label, target)
    if target.is_dir():
        raise ConfigError(f"{label}: is a folder; give a file path such as {str(target / example_name)!r}")
    if target.exists() and not target.is_file():
        raise ConfigError(f"{label}: is not a regular file (a device or FIFO); give a file path")
    writable_folder(knob, target.parent, value=path)
    return target


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages like "must be a string, not number"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict; ValueError if a key comes twice (JSON allows it, and which one a
    reader keeps differs from reader to reader: here the writer is asked to say which one it means)."""
    obj = dict(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"the key {key!r} appears twice in one object; keep one")
            seen.add(key)
    return obj


def json_value_problem(exc: ValueError) -> str:
    """What json.loads's ValueError (not a syntax error) says, for a user: Python's advice to raise its own
    limit on a number's digits is no help to one."""
    return "a number of more than 4,300 digits" if "int_max_str_digits" in str(exc) else str(exc)


def parse_json(data: bytes | str, max_depth: int = 64) -> Any:
    """JSON text -> Python, with arrays and objects nested at most `max_depth` deep and no key twice in an
    object; ValueError otherwise.

    Bytes must be UTF-8 (UnicodeDecodeError is a ValueError too), so every malformed input is a ValueError.
    """
    try:
        value = json.loads(data, object_pairs_hook=unique_keys)
    except RecursionError:
        raise ValueError(f"nested more than {max_depth} deep") from None
    except ValueError as exc:
        if json_value_problem(exc) != str(exc):  # said for a user
            raise ValueError(json_value_problem(exc)) from None
        raise
    level, depth = [value], 0
    while level:
        depth += 1
        if depth > max_depth:
            raise ValueError(f"nested more than {max_depth} deep")
        level = [child for item in level if isinstance(item, (list, dict))
                 for child in (item.values() if isinstance(item, dict) else item)]
    return value


@dataclass(frozen=True)
class NpyMember:
    """What one array of an .npz declares: its shape and dtype, read from the .npy header alone."""

    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int


MAX_EXPANSION = 20  # an .npz we write is stored, not compressed: 20x leaves room for anyone's compression


def inspect_npz(path: str | os.PathLike[str], max_bytes: int) -> dict[str, NpyMember]:
    """Member name (without .npy) -> what it declares, checked as the module docstring says.

    Raises ValueError naming the member when a size does not add up, an array holds Python objects, or
    the arrays together would take more than `max_bytes`, and when `path` is no regular file; zipfile.BadZipFile when it is no archive.
    """
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):  # a FIFO would block the read below until some writer came
        raise ValueError("not a regular file (a FIFO, a device or a folder)")
    size = info.st_size
    members: dict[str, NpyMember] = {}
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        declared = sum(info.file_size for info in infos)
        if declared > MAX_EXPANSION * size + (1 << 16):
            raise ValueError(f"its members claim {declared:,} bytes unpacked from a {size:,}-byte file "
                             "(a zip bomb?)")
        for info in infos:
            name = info.filename.removesuffix(".npy")
            if name in members:  # "meta" and "meta.npy" (or one name twice): NumPy would read one, we check another
                raise ValueError(f"{shown(name)}: two members of the archive go by that name")
            with archive.open(info) as handle:
                version = np.lib.format.read_magic(handle)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(handle)
                header_bytes = handle.tell()
            if dtype.hasobject:
                raise ValueError(f"{name}: holds Python objects, which are never loaded")
            nbytes = math.prod(shape) * dtype.itemsize
            if header_bytes + nbytes != info.file_size:
                raise ValueError(f"{name}: its header declares {shape} {dtype} ({nbytes:,} bytes) but "
                                 f"{info.file_size - header_bytes:,} bytes follow it")
            members[name] = NpyMember(tuple(shape), dtype, nbytes)
    total = sum(member.nbytes for member in members.values())
    if total > max_bytes:
        raise ValueError(f"its arrays would take {total:,} bytes, more than the {max_bytes:,} allowed")
    return members
