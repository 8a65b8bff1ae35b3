"""Fetching a public dataset file: resumable, checked by sha256, with urllib only.

The bytes go to `DEST.part` first. If the transfer stops, the next run asks the server for the rest
(an HTTP `Range: bytes=N-` request) and appends; a server that ignores Range sends everything again and
the part file is rewritten, and one whose answer starts anywhere but byte N is asked again for the whole file. Only a file whose sha256 matches is renamed to DEST, so DEST is always whole,
and an existing DEST is not touched until its replacement is complete and checked.

Both ends are checked before a byte moves: a `file://` source must be a regular file (a FIFO would block
forever, /dev/zero never end), and DEST.part must be a regular file or absent, never a link: appending through
one would grow whatever file it points at, outside the folder the user chose.
"""

from __future__ import annotations

import http.client
import os
import re
import stat
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO, TextIO

from microgpt.data.dataset import sha256_file
from microgpt.errors import ConfigError, DatasetError, WriteFailed, one_line
from microgpt.safe_io import open_regular, writable_file

DOLLY_URL = (
    "https://huggingface.co/datasets/databricks/databricks-dolly-15k/resolve/main/databricks-dolly-15k.jsonl"
)
# The Git LFS object id (= sha256) of that file, revision bdd27f4d94b9c1f951818a7da7fd7aeea5dbff1a: 15,011 rows.
DOLLY_SHA256 = "2df9083338b4abd6bceb5635764dab5d833b393b55759dffb0959b6fcbf794ec"
DOLLY_PATH = Path("datasets/raw/databricks-dolly-15k.jsonl")
CHUNK = 1 << 16
MAX_BYTES = 1 << 30  # 1 GiB: far past any dataset trained here in minutes (Dolly is 13 MB); a body that never ends stops
SCHEMES = ("https", "http", "file")  # file: a mirror on this machine


def check_url(url: str) -> str:
    """`url` if it is an http(s) or file URL; ConfigError in one line otherwise (the URL shown escaped)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"--url {url!r}: {exc}; give a URL such as {DOLLY_URL}") from None
    if parts.scheme not in SCHEMES or not (parts.netloc or parts.scheme == "file") or not url.isprintable() \
            or " " in url:
        raise ConfigError(f"--url {url!r}: not an {', '.join(SCHEMES)} URL; give one such as {DOLLY_URL}")
    return url


def download(
    url: str, dest: str | Path, sha256: str | None, out: TextIO = sys.stderr, timeout: float = 30.0,
    max_bytes: int = MAX_BYTES,
) -> Path:
    """Download `url` to `dest`, resuming a partial `.part` file; None as sha256 skips the check.

    Raises DatasetError (one line) when offline, on an HTTP error, past `max_bytes`, or when the sha256 does
    not match; ConfigError for a URL that is not one, or a DEST.part that is a link, folder, FIFO or device.
    """
    check_url(url)
    dest = writable_file("--out", dest, DOLLY_PATH.name)
    if dest.exists():
        if sha256 is None or sha256_file(dest) == sha256:
            print(f"{dest} is already here", file=out)
            return dest
        print(f"{dest} does not match the expected sha256; downloading a new copy (the old file stays until "
              "the new one is complete and checked)", file=out)
    part = dest.with_name(dest.name + ".part")
    _fetch(url, part, out, timeout, max_bytes)
    if sha256 is not None:
        actual = sha256_file(part)
        if actual != sha256:
            part.unlink()
            raise DatasetError(
                f"sha256 mismatch for {url}: expected {sha256}, got {actual}; the download was deleted "
                f"(pass --sha256 '' to skip the check)"
            )
    os.replace(part, dest)
    return dest


def _fetch(url: str, part: Path, out: TextIO, timeout: float, max_bytes: int) -> None:
    """Bring `part` up to the whole file: ask only for the missing bytes when some are already there, and for
    the whole file again if the server answers that request with bytes from elsewhere in it."""
    if not _fetch_once(url, part, out, timeout, max_bytes, resume=True):
        _fetch_once(url, part, out, timeout, max_bytes, resume=False)


def _fetch_once(url: str, part: Path, out: TextIO, timeout: float, max_bytes: int, resume: bool) -> bool:
    """One request (for the rest of `part`, when `resume` and it holds bytes); False, with nothing written,
    when the server's part of the file does not start where `part` ends."""
    have = _part_size(part) if resume else 0
    request = urllib.request.Request(url, headers={"User-Agent": "microgpt"})
    network = request.type != "file"
    if not network:
        _check_source_file(url, urllib.request.url2pathname(request.selector))
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status == 206 and (start := _range_start(response)) != have:
                where = "without saying from which byte" if start is None else f"from byte {start}"
                if have:  # bytes from elsewhere in the file: appended, they would make a file that was never served
                    print(f"the server sent {part.name} {where}, not {have}: downloading it whole", file=out)
                    return False
                raise DatasetError(f"cannot download {url}: asked for the whole file, the server sent part of it "
                                   f"({where}); check --url")
            resumed = have > 0 and response.status == 206
            if resumed:
                print(f"resuming {part.name} at {have / 1e6:.1f} MB", file=out)
            else:
                have = 0
            total = _total_size(response, have)
            if total is not None and total > max_bytes:
                raise DatasetError(f"cannot download {url}: it is {total:,} bytes, more than the "
                                   f"{max_bytes / 2**20:,.0f} MiB a dataset file may be (check --url)")
            with _open_part(part, append=resumed) as f:
                bar = ProgressBar(out, total, have)
                while chunk := response.read(CHUNK):
                    try:
                        f.write(chunk)
                        f.flush()
                    except OSError as exc:  # our disk, not the network: say so
                        raise WriteFailed(f"cannot write {one_line(str(part))}: {exc.strerror or exc}; free some "
                                          "space or choose another --out (what was written is kept and the next "
                                          "run resumes)") from None
                    bar.update(len(chunk))
                    if bar.done > max_bytes:
                        break
                bar.close()
        if bar.done > max_bytes:
            part.unlink()
            raise DatasetError(f"cannot download {url}: it sent more than {max_bytes / 2**20:,.0f} MiB, far more than "
                               "a dataset file; the download was deleted (check --url)")
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part file already holds every byte
            return True
        raise DatasetError(f"cannot download {url}: HTTP {exc.code} {_said(exc.reason)}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = _said(getattr(exc, "reason", None) or exc)
        notes = ["offline?"] if network else []  # a file:// source that fails is no network's fault
        if arrived := _part_size(part):
            notes.append(f"the {arrived:,} bytes that arrived are kept and the next run resumes")
        hint = f" ({'; '.join(notes)})" if notes else ""
        raise DatasetError(f"cannot download {url}: {reason}{hint}") from None
    size = part.stat().st_size
    if total is not None and size != total:
        raise DatasetError(f"download of {url} stopped at {size:,} of {total:,} bytes; run again to resume")
    return True


def _range_start(response: http.client.HTTPResponse) -> int | None:
    """Where a 206's bytes start in the file, from `Content-Range: bytes START-END/TOTAL`; None if it says not."""
    match = re.fullmatch(r"\s*bytes\s+([0-9]{1,18})-[0-9]{1,18}/(?:[0-9]{1,18}|\*)\s*",
                         response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _part_size(part: Path) -> int:
    """The bytes an earlier run left in `part` (0 if none); ConfigError if it is a link, folder, FIFO or device."""
    try:
        info = part.lstat()  # lstat: a link is looked at, not followed
    except FileNotFoundError:
        return 0
    _check_part(part, info)
    return info.st_size


def _check_part(part: Path, info: os.stat_result) -> None:
    """ConfigError unless `part` is a file of its own: not a link, folder, FIFO or device, and not a second
    name of a file elsewhere (a hard link), which writing would change."""
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        raise ConfigError(f"--out: {str(part)!r} is a link, folder, FIFO or device, or a second name of another "
                          "file, not a partial download; remove it or choose another --out")


def _open_part(part: Path, append: bool) -> BinaryIO:
    """`part` opened to append to or to rewrite; O_NOFOLLOW fails on a link put there since `_part_size` looked."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)  # NONBLOCK: no FIFO waits
    fd = os.open(part, flags, 0o644)
    try:
        _check_part(part, os.fstat(fd))  # what was opened, whatever was put there since `_part_size` looked
        os.set_blocking(fd, True)
        if not append:
            os.ftruncate(fd, 0)
        return os.fdopen(fd, "ab" if append else "wb")
    except BaseException:
        os.close(fd)
        raise


def _check_source_file(url: str, path: str) -> None:
    """A file:// source must be a regular file; DatasetError in one line if it is missing or anything else."""
    try:
        open_regular(path).close()  # opened without blocking, so a FIFO is refused instead of waited on
    except OSError as exc:
        raise DatasetError(f"cannot download {url}: {exc.strerror or exc}; check --url") from None


def _said(text: object, limit: int = 120) -> str:
    """What the server or the network said (a reason phrase, a status line): one line, escaped, cut short."""
    line = one_line(str(text))
    return line if len(line) <= limit else f"{line[:limit - 3]}..."


def _total_size(response: http.client.HTTPResponse, have: int) -> int | None:
    """The whole file's size: from `Content-Range: bytes a-b/TOTAL`, else `have` + Content-Length.

    Only ASCII digits count (str.isdigit also takes "²", which int() refuses), at most 18 of them.
    """
    match = re.search(r"/([0-9]{1,18})\s*$", response.headers.get("Content-Range", ""))
    if match:
        return int(match.group(1))
    length = response.headers.get("Content-Length", "")
    return have + int(length) if re.fullmatch(r"[0-9]{1,18}", length) else None


class ProgressBar:
    """`[#####-----]  52%  6.8/13.1 MB  4.2 MB/s`, redrawn in place on a terminal, at most 10 times a second.

    On anything but a terminal (a log file, a test) it draws nothing.
    """

    def __init__(self, out: TextIO, total: int | None, done: int = 0, width: int = 30) -> None:
        self.out, self.total, self.done, self.width = out, total, done, width
        self.enabled = out.isatty()
        self.started = self.drawn_at = time.monotonic()
        self.start_done = done

    def update(self, n: int) -> None:
        self.done += n
        if self.enabled and time.monotonic() - self.drawn_at >= 0.1:
            self._draw()

    def close(self) -> None:
        if self.enabled:
            self._draw()
            self.out.write("\n")

    def _draw(self) -> None:
        self.drawn_at = now = time.monotonic()
        rate = (self.done - self.start_done) / max(now - self.started, 1e-9) / 1e6
        if self.total:
            filled = self.width * self.done // self.total
            bar = f"[{'#' * filled}{'-' * (self.width - filled)}] {100 * self.done // self.total:3d}%  "
            amount = f"{self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB"
        else:
            bar, amount = "", f"{self.done / 1e6:.1f} MB"
        self.out.write(f"\r{bar}{amount}  {rate:.1f} MB/s")
        self.out.flush()
