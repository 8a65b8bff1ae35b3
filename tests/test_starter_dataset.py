"""The shipped default dataset: valid, big enough, every record type, nothing repeated."""

from __future__ import annotations

import json
from pathlib import Path

from microgpt.data.dataset import load_documents, validate_dataset
from microgpt.data.records import RECORD_TYPES

STARTER = Path(__file__).resolve().parents[1] / "datasets" / "starter" / "starter.jsonl"


def test_the_starter_dataset_validates_with_every_record_type() -> None:
    report = validate_dataset(STARTER)
    assert report.ok, report.problems
    assert report.documents >= 1500
    assert {t for t in RECORD_TYPES if t != "dolly"} <= set(report.counts)


def test_the_starter_dataset_has_300k_characters_and_no_repeats() -> None:
    records = [json.loads(line) for line in STARTER.read_text(encoding="utf-8").splitlines() if line.strip()]
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    texts = [d.text for d in load_documents(STARTER)]
    assert len(set(texts)) == len(texts)
    assert sum(len(t) for t in texts) >= 300_000
