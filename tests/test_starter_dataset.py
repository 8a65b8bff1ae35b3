"""The shipped default dataset: valid, big enough, every record type, nothing repeated, nothing borrowed from
the evaluation set."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from microgpt.data.dataset import load_documents, validate_dataset
from microgpt.data.records import RECORD_TYPES

ROOT = Path(__file__).resolve().parents[1]
STARTER = ROOT / "datasets" / "starter" / "starter.jsonl"
HELDOUT = ROOT.parent / "shared" / "eval" / "self_instruct_seed_tasks.jsonl"
SPAN = 8  # words: a shared run this long is a copied phrase, not a common expression


def test_the_starter_dataset_validates_with_every_record_type() -> None:
    report = validate_dataset(STARTER)
    assert report.ok, report.problems
    assert report.documents >= 10_000
    assert set(RECORD_TYPES) <= set(report.counts)


def test_the_starter_dataset_has_millions_of_characters_and_no_repeats() -> None:
    records = [json.loads(line) for line in STARTER.read_text(encoding="utf-8").splitlines() if line.strip()]
    ids = [r["id"] for r in records if "id" in r]
    assert len(set(ids)) == len(ids)
    texts = [d.text for d in load_documents(STARTER)]
    assert len(set(texts)) == len(texts)
    assert sum(len(t) for t in texts) >= 5_000_000


def _spans(text: str) -> set[str]:
    words = re.sub(r"[^a-z0-9 ]+", "", re.sub(r"\s+", " ", text.lower())).split()
    return {" ".join(words[i:i + SPAN]) for i in range(len(words) - SPAN + 1)}


@pytest.mark.skipif(not HELDOUT.is_file(), reason=f"the evaluation set is not beside the project ({HELDOUT})")
def test_no_evaluation_text_was_copied_into_the_starter_dataset() -> None:
    trained: set[str] = set()
    for document in load_documents(STARTER):
        trained |= _spans(document.text)
    copied = [d.text[:60] for d in load_documents(HELDOUT) if _spans(d.text) & trained]
    assert not copied, f"{len(copied)} evaluation records share an {SPAN}-word run with the starter data: {copied[:3]}"


@pytest.mark.parametrize("name", ["everyday.txt", "everyday_check.txt"])
def test_no_starter_record_holds_one_of_the_everyday_prompts(name: str) -> None:
    """The README's everyday requests judge replies to questions the model has not been taught word for word."""
    def plain(text: str) -> str:
        return " ".join(re.sub(r"[^a-z0-9 ]+", "", re.sub(r"\s+", " ", text.lower())).split())

    lines = (ROOT / "datasets" / "prompts" / name).read_text(encoding="utf-8").splitlines()
    prompts = [plain(line) for line in lines if line.strip() and not line.startswith("#")]
    assert len(prompts) == 10
    found = [(p, d.text[:60]) for d in load_documents(STARTER) for p in prompts if p in plain(d.text)]
    assert not found, found[:3]
