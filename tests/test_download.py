"""`data get dolly` against a local HTTP server: full download, resume, bad sha256, unreachable host."""

import hashlib
import http.server
import socket
import threading
from typing import ClassVar

import pytest

import microgpt.__main__ as cli
from microgpt.data.download import download
from microgpt.errors import DatasetError

PAYLOAD = b"".join(
    b'{"instruction": "q%d", "context": "", "response": "a", "category": "open_qa"}\n' % i
    for i in range(3000)
)
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at any path, honouring `Range: bytes=N-`, and records the Range headers it saw."""

    ranges: ClassVar[list[str | None]] = []
    cut_after: ClassVar[int | None] = None  # when set, the next response stops after this many bytes

    def do_GET(self):
        requested = self.headers.get("Range")
        type(self).ranges.append(requested)
        start = int(requested.removeprefix("bytes=").rstrip("-")) if requested else 0
        if start >= len(PAYLOAD):
            self.send_response(416)
            self.end_headers()
            return
        body = PAYLOAD[start:]
        self.send_response(206 if requested else 200)
        if requested:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).cut_after is not None:
            body, type(self).cut_after = body[: type(self).cut_after], None
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    RangeHandler.ranges = []
    RangeHandler.cut_after = None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/dolly.jsonl"
    httpd.shutdown()
    httpd.server_close()


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
    assert err.count("\n") == 1 and "cannot download" in err


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
