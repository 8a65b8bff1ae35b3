"""`data get dolly` against a local HTTP server: full download, resume, bad sha256, unreachable host; and
attacked: a FIFO or device as the source or as DEST.part, a link at DEST.part, a server that says odd things."""

import hashlib
import http.server
import io
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar

import pytest

import microgpt.__main__ as cli
from microgpt.data.download import _open_part, download
from microgpt.errors import DatasetError, WriteFailed

PAYLOAD = b"".join(
    b'{"instruction": "q%d", "context": "", "response": "a", "category": "open_qa"}\n' % i
    for i in range(3000)
)
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at any path, honouring `Range: bytes=N-`, and records the Range headers it saw."""

    ranges: ClassVar[list[str | None]] = []
    cut_after: ClassVar[int | None] = None  # when set, the next response stops after this many bytes
    wrong_start: ClassVar[int | None] = None  # when set, a range request is answered from this byte instead
    say_range: ClassVar[bool] = True  # False: a 206 without its Content-Range

    def do_GET(self):
        requested = self.headers.get("Range")
        type(self).ranges.append(requested)
        start = int(requested.removeprefix("bytes=").rstrip("-")) if requested else 0
        if requested and type(self).wrong_start is not None:
            start = type(self).wrong_start
        if start >= len(PAYLOAD):
            self.send_response(416)
            self.end_headers()
            return
        body = PAYLOAD[start:]
        self.send_response(206 if requested else 200)
        if requested and type(self).say_range:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).cut_after is not None:
            body, type(self).cut_after = body[: type(self).cut_after], None
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class OddHandler(http.server.BaseHTTPRequestHandler):
    """/loop redirects to itself, /oops answers 500 with an escape sequence in its reason phrase, /partial
    answers 206 with bytes 10-12 of a file though no Range was asked for, and the
    paths in LENGTHS declare a length that is no number: "²" (a digit to str.isdigit, not to int), or one of
    5,000 digits (past the 4,300 that int() converts)."""

    LENGTHS: ClassVar[dict[str, str]] = {"/superscript": "\u00b2", "/long": "9" * 5000}

    def do_GET(self):
        if self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
        elif self.path == "/oops":
            self.send_response(500, "Oops\x1b[31m")
        elif self.path == "/partial":  # part of a file, though no Range was asked for
            self.send_response(206)
            self.send_header("Content-Range", "bytes 10-12/13")
            self.send_header("Content-Length", "3")
        else:
            self.send_response(200)
            self.send_header("Content-Length", self.LENGTHS[self.path])
        self.end_headers()
        self.wfile.write(b"{}\n" if self.path in self.LENGTHS else b"abc" if self.path == "/partial" else b"")

    def log_message(self, *args):
        pass


def _serve(handler):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server():
    RangeHandler.ranges = []
    RangeHandler.cut_after = None
    RangeHandler.wrong_start = None
    RangeHandler.say_range = True
    for base in _serve(RangeHandler):
        yield f"{base}/dolly.jsonl"


@pytest.fixture
def odd_server():
    yield from _serve(OddHandler)


@pytest.fixture
def data_cli(monkeypatch):
    """The real dispatcher, limited to the `data` command."""
    monkeypatch.setattr(cli, "COMMANDS", {"data": cli.COMMANDS["data"]})
    return cli.main


def test_full_download_through_the_cli(server, tmp_path, data_cli, capsys):
    out = tmp_path / "raw" / "dolly.jsonl"
    assert data_cli(["data", "get", "dolly", "--url", server, "--sha256", SHA256, "--out", str(out)]) == 0
    assert out.read_bytes() == PAYLOAD
    assert not out.with_name("dolly.jsonl.part").exists()
    assert "sha256 ok" in capsys.readouterr().out
    assert data_cli(["data", "get", "dolly", "--url", server, "--sha256", SHA256, "--out", str(out)]) == 0
    assert RangeHandler.ranges == [None]  # the second run found the file and did not download


def test_partial_download_resumes_with_a_range_request(server, tmp_path):
    out = tmp_path / "dolly.jsonl"
    out.with_name("dolly.jsonl.part").write_bytes(PAYLOAD[:5000])
    download(server, out, SHA256)
    assert RangeHandler.ranges == ["bytes=5000-"]
    assert out.read_bytes() == PAYLOAD


def test_a_dropped_connection_keeps_the_bytes_and_the_next_run_resumes(server, tmp_path, data_cli, capsys):
    out = tmp_path / "dolly.jsonl"
    argv = ["data", "get", "dolly", "--url", server, "--sha256", SHA256, "--out", str(out)]
    RangeHandler.cut_after = 7000
    assert data_cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stopped at 7,000 of" in err
    assert data_cli(argv) == 0
    assert RangeHandler.ranges == [None, "bytes=7000-"]
    assert out.read_bytes() == PAYLOAD


@pytest.mark.parametrize("wrong_start", [0, 1000, 6000])
def test_a_range_answered_from_another_byte_is_not_appended_the_whole_file_is_fetched_again(
        server, tmp_path, wrong_start):
    out, said = tmp_path / "dolly.jsonl", io.StringIO()
    out.with_name("dolly.jsonl.part").write_bytes(PAYLOAD[:5000])
    RangeHandler.wrong_start = wrong_start
    download(server, out, None, out=said)  # no sha256 to catch it: the bytes themselves must be right
    assert RangeHandler.ranges == ["bytes=5000-", None]
    assert out.read_bytes() == PAYLOAD
    assert f"from byte {wrong_start}, not 5000: downloading it whole" in said.getvalue()


def test_a_range_answered_without_saying_where_it_starts_is_fetched_whole_again(server, tmp_path):
    out, said = tmp_path / "dolly.jsonl", io.StringIO()
    out.with_name("dolly.jsonl.part").write_bytes(PAYLOAD[:5000])
    RangeHandler.say_range = False
    download(server, out, None, out=said)
    assert RangeHandler.ranges == ["bytes=5000-", None] and out.read_bytes() == PAYLOAD
    assert "without saying from which byte, not 5000: downloading it whole" in said.getvalue()


def test_part_of_a_file_sent_for_the_whole_is_refused_and_nothing_written(odd_server, tmp_path):
    out = tmp_path / "dolly.jsonl"
    with pytest.raises(DatasetError, match=r"the server sent part of it \(from byte 10\)"):
        download(f"{odd_server}/partial", out, None, out=io.StringIO())
    assert list(tmp_path.iterdir()) == []


def test_complete_part_file_is_accepted_when_the_server_has_nothing_more(server, tmp_path):
    out = tmp_path / "dolly.jsonl"
    out.with_name("dolly.jsonl.part").write_bytes(PAYLOAD)
    download(server, out, SHA256)
    assert out.read_bytes() == PAYLOAD


def test_bad_sha256_is_exit_2_with_one_line_and_no_file(server, tmp_path, data_cli, capsys):
    out = tmp_path / "dolly.jsonl"
    assert data_cli(["data", "get", "dolly", "--url", server, "--sha256", "0" * 64, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sha256 mismatch" in err
    assert not out.exists() and not out.with_name("dolly.jsonl.part").exists()


def test_empty_sha256_skips_the_check(server, tmp_path, data_cli, capsys):
    out = tmp_path / "dolly.jsonl"
    assert data_cli(["data", "get", "dolly", "--url", server, "--sha256", "", "--out", str(out)]) == 0
    assert out.read_bytes() == PAYLOAD and "not checked" in capsys.readouterr().out


def test_unreachable_url_is_exit_2_with_one_line(tmp_path, data_cli, capsys):
    url = f"http://127.0.0.1:{free_port()}/dolly.jsonl"
    assert data_cli(["data", "get", "dolly", "--url", url, "--out", str(tmp_path / "d.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot download" in err and "(offline?)" in err


@pytest.mark.parametrize(("where", "said"), [("missing", "No such file"), ("192.0.2.1", "not on local host")])
def test_a_local_source_that_fails_is_one_line_that_does_not_blame_the_network(tmp_path, data_cli, capsys, where,
                                                                               said):
    (tmp_path / "d.jsonl").write_bytes(PAYLOAD)  # a file:// URL with a host names a file on that host, not here
    url = (tmp_path / "none.jsonl").as_uri() if where == "missing" else f"file://{where}{tmp_path}/d.jsonl"
    assert data_cli(["data", "get", "dolly", "--url", url, "--out", str(tmp_path / "out.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err and "offline" not in err


@pytest.mark.parametrize("path", ["/loop", "/oops"])
def test_what_a_server_says_is_shown_on_one_line_escaped(odd_server, tmp_path, data_cli, capsys, path):
    assert data_cli(["data", "get", "dolly", "--url", odd_server + path, "--out", str(tmp_path / "d.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and len(err) < 300
    assert ("HTTP 302 The HTTP server returned a redirect error" in err if path == "/loop"
            else "HTTP 500 Oops\\x1b[31m" in err)


@pytest.mark.parametrize("path", sorted(OddHandler.LENGTHS))
def test_a_length_that_is_no_number_is_treated_as_unknown(odd_server, tmp_path, path):
    out = tmp_path / "d.jsonl"
    download(odd_server + path, out, None)
    assert out.read_bytes() == b"{}\n"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
@pytest.mark.parametrize("fifo", ["source", "part"])
def test_a_fifo_as_the_source_or_the_part_file_is_one_line_not_a_hang(tmp_path, fifo):
    source, out = tmp_path / "source.jsonl", tmp_path / "dl" / "d.jsonl"
    out.parent.mkdir()
    if fifo == "source":
        os.mkfifo(source)
    else:
        source.write_bytes(PAYLOAD)
        os.mkfifo(out.with_name("d.jsonl.part"))
    result = subprocess.run([sys.executable, "-m", "microgpt", "data", "get", "dolly", "--url", source.as_uri(),
                             "--sha256", "", "--out", str(out)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert ("not a regular file" if fifo == "source" else "d.jsonl.part") in result.stderr
    assert not out.exists()


def test_a_device_source_is_refused_before_a_byte_is_written(tmp_path):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero on this OS")
    with pytest.raises(DatasetError, match="not a regular file"):
        download("file:///dev/zero", tmp_path / "d.jsonl", None, max_bytes=1000)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["link", "dangling link", "folder"])
def test_a_part_file_that_is_a_link_or_a_folder_is_refused_and_nothing_written_through_it(
        server, tmp_path, data_cli, capsys, kind):
    (tmp_path / "else").mkdir()
    (tmp_path / "dl").mkdir()
    notes, part = tmp_path / "else" / "notes.txt", tmp_path / "dl" / "x.jsonl.part"
    if kind == "link":
        notes.write_bytes(PAYLOAD[:100])
    if kind == "folder":
        part.mkdir()
    else:
        part.symlink_to(notes)
    argv = ["data", "get", "dolly", "--url", server, "--sha256", "", "--out", str(tmp_path / "dl" / "x.jsonl")]
    assert data_cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "x.jsonl.part" in err and "offline" not in err
    assert RangeHandler.ranges == []  # refused before asking the server for anything
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["x.jsonl.part"]
    assert [p.read_bytes() for p in (tmp_path / "else").iterdir()] == ([PAYLOAD[:100]] if kind == "link" else [])


@pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="no O_NOFOLLOW on this OS")
def test_the_part_file_is_never_opened_through_a_link(tmp_path):
    """The race the check before the request cannot see: a link put at DEST.part while the server answers."""
    (tmp_path / "notes.txt").write_bytes(b"mine")
    (tmp_path / "x.jsonl.part").symlink_to(tmp_path / "notes.txt")
    for append in (True, False):
        with pytest.raises(OSError):
            _open_part(tmp_path / "x.jsonl.part", append)
    assert (tmp_path / "notes.txt").read_bytes() == b"mine"


def test_malformed_sha256_flag_is_rejected(tmp_path, data_cli, capsys):
    assert data_cli(["data", "get", "dolly", "--sha256", "xyz", "--out", str(tmp_path / "d")]) == 2
    assert "64 hex digits" in capsys.readouterr().err


@pytest.mark.parametrize("url", ["not a url", "", "http://[::1/x", "ftp://example.com/d.jsonl", "http://x\n/",
                                 "http:///no-host"])
def test_a_malformed_url_is_exit_2_with_one_line_and_nothing_written(tmp_path, data_cli, capsys, url):
    assert data_cli(["data", "get", "dolly", "--url", url, "--out", str(tmp_path / "d.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--url" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("declared", [True, False])
def test_a_body_past_the_size_cap_stops_and_is_deleted(server, tmp_path, declared, monkeypatch):
    if not declared:  # a server that sends no Content-Length (an endless body): stopped while it arrives
        monkeypatch.setattr(RangeHandler, "send_header", lambda self, name, value: None)
    out = tmp_path / "dolly.jsonl"
    with pytest.raises(DatasetError, match="more than") as error:
        download(server, out, None, max_bytes=len(PAYLOAD) // 4)
    assert ("bytes, more than" in str(error.value)) == declared  # refused from its declared size, or cut short
    assert list(tmp_path.iterdir()) == []
    download(server, out, SHA256)  # the default cap takes a real file
    assert out.read_bytes() == PAYLOAD


def free_port() -> int:
    """A port nobody listens on: bind one, note its number, close it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_full_disk_while_downloading_names_the_disk_not_the_network(server, tmp_path, monkeypatch):
    """A write that fails is our disk's doing: the message names the part file and says nothing of being offline."""
    import microgpt.data.download as download_module

    real = download_module._open_part

    def full_disk(part, append):
        handle = real(part, append)

        def refuse(chunk):
            raise OSError(28, "No space left on device")

        handle.write = refuse
        return handle

    monkeypatch.setattr(download_module, "_open_part", full_disk)
    with pytest.raises(WriteFailed) as failed:
        download(server + "/data.jsonl", tmp_path / "d.jsonl", None)
    message = str(failed.value)
    assert failed.value.exit_code == 1  # a failed write, not bad input (2): the README's Reliability section
    assert "cannot write" in message and "d.jsonl.part" in message and "No space left" in message
    assert "offline" not in message


def test_a_part_file_that_is_a_second_name_of_another_file_is_refused(server, tmp_path) -> None:
    """A hard link passes lstat and O_NOFOLLOW: writing it would change the file it shares, outside --out."""
    elsewhere = tmp_path / "else"
    elsewhere.mkdir()
    precious = elsewhere / "notes.txt"
    precious.write_text("precious\n")
    out = tmp_path / "dl" / "x.jsonl"
    out.parent.mkdir()
    os.link(precious, out.with_name("x.jsonl.part"))
    with pytest.raises(Exception, match="second name of another file"):
        download(server, out, None)
    assert precious.read_text() == "precious\n"
