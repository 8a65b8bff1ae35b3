"""The xz anchor that held-out bits per byte are compared with (`eval --baseline xz`)."""

from __future__ import annotations

import json

from test_eval import qa_records, save_random_checkpoint, texts_of, write_jsonl

from microgpt.__main__ import main
from microgpt.evaluation.baseline import xz_bits_per_byte

HELDOUT = ["The kettle clicked off, so I poured the water over the leaves and waited four minutes.",
           "A short walk after lunch helps many people stay awake through the afternoon."]


def test_xz_pays_less_for_text_it_has_already_read() -> None:
    unrelated = ["Invoices are due on the first Monday of each month."] * 3
    seen = xz_bits_per_byte(HELDOUT + unrelated, HELDOUT)
    unseen = xz_bits_per_byte(unrelated, HELDOUT)
    assert 0 < seen < unseen / 3  # a repeat costs a few bytes of back-reference, new text costs its entropy


def test_eval_baseline_reports_xz_beside_the_model(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    train = write_jsonl(tmp_path / "train.jsonl", qa_records(12))
    heldout = write_jsonl(tmp_path / "heldout.jsonl", qa_records(3))
    ckpt = save_random_checkpoint(tmp_path / "m.npz", texts_of(train) + texts_of(heldout))
    assert main(["eval", str(ckpt), str(heldout), "--baseline", "xz", "--train-data", str(train), "--json",
                 "--log-dir", str(tmp_path / "logs")]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = xz_bits_per_byte(texts_of(train), texts_of(heldout))
    assert report["baseline"]["bits_per_byte"] == {str(heldout): expected}
    assert main(["eval", str(ckpt), str(heldout), "--baseline", "xz", "--log-dir", str(tmp_path / "logs")]) == 2
    assert "give --train-data PATH" in capsys.readouterr().err
