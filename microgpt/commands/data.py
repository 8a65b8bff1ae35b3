"""`python -m microgpt data get dolly`: fetch databricks-dolly-15k into datasets/raw/, resumable and checked."""

from __future__ import annotations

import argparse
import re

from microgpt.data.download import DOLLY_PATH, DOLLY_SHA256, DOLLY_URL, download
from microgpt.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    get = actions.add_parser("get", help="download a public dataset", description="download a public dataset")
    get.add_argument("name", choices=["dolly"], help="dolly: databricks-dolly-15k (13 MB, CC BY-SA 3.0)")
    get.add_argument("--url", default=DOLLY_URL, help="where to download from (a mirror)")
    get.add_argument("--sha256", default=DOLLY_SHA256, help="expected sha256 of the file; '' skips the check")
    get.add_argument("--out", default=str(DOLLY_PATH), help=f"where to save it (default {DOLLY_PATH})")


def run(args: argparse.Namespace) -> int:
    sha256 = args.sha256.strip().lower() or None
    if sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ConfigError(f"--sha256 {args.sha256!r} is not 64 hex digits (pass '' to skip the check)")
    path = download(args.url, args.out, sha256)
    check = "sha256 ok" if sha256 else "sha256 not checked"
    print(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB, {check})")
    return 0
