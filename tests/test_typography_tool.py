"""tools/typography.py: the punctuation pass that gives a share of the starter set typographic quotes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("typography", REPO / "tools" / "typography.py")
typography = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(typography)


def test_prose_gets_typographic_apostrophes_quotes_ellipses_and_dashes():
    assert typography.typeset("I don't know, it's the cats' toy.") == "I don\u2019t know, it\u2019s the cats\u2019 toy."
    assert typography.typeset('She said "hello there" and left...') == "She said \u201chello there\u201d and left\u2026"
    assert typography.typeset("Use 'single' quotes - or not.") == "Use \u2018single\u2019 quotes \u2014 or not."
    assert typography.typeset('He said: "Go." Then ("stop").') == "He said: \u201cGo.\u201d Then (\u201cstop\u201d)."


def test_code_like_text_is_left_alone():
    for code in ('x = "a"', "print('hi')", "Run `ls -l` first", "if (a) { b(); }"):
        assert typography.typeset(code) == code


def test_only_text_fields_change_and_only_every_nth_record(tmp_path):
    records = [{"id": f"r'{i}", "record_type": "chat", "input": "What's up?", "output": "It's fine."}
               for i in range(6)]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    done = subprocess.run([sys.executable, str(REPO / "tools" / "typography.py"), str(path), "--every", "3"],
                          capture_output=True, text=True, check=True)
    assert "typeset 2 of 6 records" in done.stdout
    out = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for i, record in enumerate(out):
        assert record["id"] == f"r'{i}" and record["record_type"] == "chat"  # ids stay exactly as written
        assert record["input"] == ("What\u2019s up?" if i % 3 == 0 else "What's up?")
