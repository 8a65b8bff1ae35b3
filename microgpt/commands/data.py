"""`python -m microgpt data get dolly`: fetch databricks-dolly-15k into datasets/raw/, resumable and checked.
`python -m microgpt data import-transcripts DIR OUT.jsonl`: your own `U:`/`A:` conversations as chat records."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from microgpt.atomic import atomic_write_text
from microgpt.data.download import DOLLY_PATH, DOLLY_SHA256, DOLLY_URL, download
from microgpt.data.transcripts import HISTORY_TURNS, import_transcripts, record_line, transcript_files
from microgpt.errors import ConfigError, counted, one_line
from microgpt.safe_io import writable_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    get = actions.add_parser("get", help="download a public dataset", description="download a public dataset",
                             allow_abbrev=False)  # options spelled out, as every command's (see __main__)
    get.add_argument("name", choices=["dolly"], help="dolly: databricks-dolly-15k (13 MB, CC BY-SA 3.0)")
    get.add_argument("--url", default=DOLLY_URL, help="where to download from (a mirror)")
    get.add_argument("--sha256", default=DOLLY_SHA256, help="expected sha256 of the file; '' skips the check")
    get.add_argument("--out", default=str(DOLLY_PATH), help=f"where to save it (default {DOLLY_PATH})")
    imp = actions.add_parser(
        "import-transcripts", help="turn U:/A: text transcripts into chat records",
        description="Read every *.txt in DIR: turns start with 'U:' (user) or 'A:' (assistant), other lines "
        f"continue the turn above. Each reply becomes a chat record with up to {HISTORY_TURNS} earlier exchanges "
        "as history. Problems are listed as PATH:LINE (exit 1) and nothing is written.", allow_abbrev=False)
    imp.add_argument("folder", metavar="DIR", help="folder of .txt transcripts")
    imp.add_argument("out", metavar="OUT.jsonl", help="the dataset to write (replaced atomically)")


def run(args: argparse.Namespace) -> int:
    if args.action == "import-transcripts":
        return _import_transcripts(Path(args.folder), Path(args.out))
    sha256 = args.sha256.strip().lower() or None
    if sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ConfigError(f"--sha256 {args.sha256!r} is not 64 hex digits (pass '' to skip the check)")
    path = download(args.url, args.out, sha256)
    check = "sha256 ok" if sha256 else "sha256 not checked"
    print(f"saved {one_line(str(path))} ({path.stat().st_size / 1e6:.1f} MB, {check})")
    return 0


def _import_transcripts(folder: Path, out: Path) -> int:
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder; give the folder that holds your .txt transcripts")
    writable_file("OUT.jsonl", out, "chats.jsonl")  # not a folder, device or FIFO, in a folder that takes files
    inputs = [path for path in transcript_files(folder) if path.exists() and out.exists() and path.samefile(out)]
    if inputs:
        raise ConfigError(f"OUT.jsonl={str(out)!r} is the transcript {str(inputs[0])!r}: writing it would destroy "
                          "that input; give a file outside the transcripts, such as "
                          f"{str(folder.parent / 'chats.jsonl')!r}")
    records, problems = import_transcripts(folder)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{one_line(str(folder))}: {counted(len(problems), 'problem')}; nothing written", file=sys.stderr)
        return 1
    if not records:
        raise ConfigError(f"{folder}: no .txt transcripts found")
    atomic_write_text(out, "".join(record_line(r) for r in records))
    shown_out = one_line(str(out))
    print(f"wrote {counted(len(records), 'chat record')} to {shown_out}; check them with "
          f"`python -m microgpt validate-dataset {shown_out}`")
    return 0
