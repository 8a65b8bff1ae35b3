"""Benchmark: build a tokenizer on 15,000 Dolly-sized records (~13 MB) and encode them all.

    python -m microgpt.data.bench_tokenize [N_RECORDS]

The records are synthetic but shaped like Dolly's: Zipf-distributed words from a 20,000-word invented
lexicon of letter strings (so cl100k meets many rare merges), numbers, punctuation, and a little non-English text.
The target is 15 s on two cores for both steps together.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from microgpt.data.templates import render_record
from microgpt.data.tokenizer import build_tokenizer

LETTERS = "etaoinshrdlcumwfgypbvkjxqz"
LETTER_WEIGHTS = 1.0 / np.arange(1, len(LETTERS) + 1)  # letters in English frequency order, falling as 1/rank
EXTRAS = ["café", "naïve", "東京", "Straße", "😀", "42", "3.14", "(see above)", "e.g.", "—"]


def synthetic_records(n_records: int, seed: int = 0) -> list[dict]:
    """`n_records` Dolly rows averaging ~830 bytes each, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    letters = rng.choice(list(LETTERS), size=(20_000, 10), p=LETTER_WEIGHTS / LETTER_WEIGHTS.sum())
    lexicon = ["".join(row[: rng.integers(1, 11)]) for row in letters] + EXTRAS
    zipf = np.cumsum(1.0 / np.arange(1, len(lexicon) + 1))  # a few words are everywhere, most are rare

    def sentence_run(n_words: int) -> str:
        words = np.searchsorted(zipf, rng.random(n_words) * zipf[-1])
        text = " ".join(lexicon[i] for i in words)
        return text[:1].upper() + text[1:] + "."

    records = []
    for _ in range(n_records):
        records.append(
            {
                "instruction": sentence_run(int(rng.integers(5, 25))),
                "context": sentence_run(int(rng.integers(0, 160))) if rng.random() < 0.3 else "",
                "response": sentence_run(int(rng.integers(20, 150))),
                "category": "open_qa",
            }
        )
    return records


def main(argv: list[str] | None = None) -> None:
    """Print the corpus size and the seconds taken by build_tokenizer and encode_batch."""
    argv = sys.argv[1:] if argv is None else argv
    n_records = int(argv[0]) if argv else 15_000
    texts = [render_record(record) for record in synthetic_records(n_records)]
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    print(f"{n_records:,} records, {megabytes:.1f} MB of rendered text")

    started = time.perf_counter()
    tokenizer = build_tokenizer("bpe", 2048, texts)
    built = time.perf_counter()
    encoded = tokenizer.encode_batch(texts)
    done = time.perf_counter()

    tokens = sum(map(len, encoded))
    print(f"build_tokenizer: {built - started:.2f} s (vocab {tokenizer.vocab_size:,})")
    print(
        f"encode_batch:    {done - built:.2f} s ({tokens:,} tokens, {tokens / (done - built) / 1e6:.2f} M/s)"
    )
    print(f"total:           {done - started:.2f} s")


if __name__ == "__main__":
    main()
