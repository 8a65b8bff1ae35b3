"""The original Go microgpt's two vocabularies, as stored in its JSON checkpoints.

They differ from ours (see tokenizer.py). BPE: local id i is cl100k token token_ids[i], then UNK = K and
BOS = K+1; tokens outside the vocabulary become UNK. Char: local id i is vocab[i], then BOS = len(vocab);
unknown characters are dropped. Decoding drops UNK and BOS, as the original did.
"""

from __future__ import annotations

from collections.abc import Iterable

from microgpt.data.tokenizer import CL100K, Tokenizer, rank_table, tokenizer_from_dict


class GoBPETokenizer:
    """The original's BPE vocabulary: a list of cl100k ids, plus UNK and BOS at the end."""

    kind = "go-bpe"
    lossless = False  # a token outside the list becomes UNK: its text cannot be spelled back

    def __init__(self, token_ids: list[int], encoding: str = CL100K, bpe_file: str | None = None) -> None:
        self.encoding = encoding
        self._cl100k = rank_table(encoding, bpe_file)  # BPE_FILE's ranks for an encoding not installed
        self.token_ids = [int(t) for t in token_ids]
        if self.token_ids and not 0 <= min(self.token_ids) <= max(self.token_ids) < self._cl100k.size:
            raise ValueError(f"bpe_token_ids must lie in 0..{self._cl100k.size - 1} (the {encoding} ranks)")
        self.unk_id = len(self.token_ids)
        self.bos_id = self.unk_id + 1
        self.vocab_size = self.bos_id + 1
        self._to_local = {t: i for i, t in enumerate(self.token_ids)}

    def encode(self, text: str) -> list[int]:
        ranks, _ = self._cl100k.encode([text])
        return [self._to_local.get(int(r), self.unk_id) for r in ranks]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return b"".join(self._cl100k.token_bytes(self.token_ids[i]) for i in ids if 0 <= i < self.unk_id)

    def decode(self, ids: Iterable[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "token_ids": self.token_ids, "encoding": self.encoding}


class GoCharTokenizer:
    """The original's character vocabulary, BOS last, unknown characters dropped."""

    kind = "go-char"
    lossless = False  # an unknown character is dropped

    def __init__(self, vocab: list[str]) -> None:
        self.vocab = list(vocab)
        if not all(isinstance(piece, str) and len(piece) == 1 for piece in self.vocab):
            raise ValueError("vocab must be a list of single characters (the original's runes)")
        if len(set(self.vocab)) != len(self.vocab):
            raise ValueError("vocab lists a character twice")
        self.bos_id = len(self.vocab)
        self.vocab_size = self.bos_id + 1
        self._to_local = {c: i for i, c in enumerate(self.vocab)}

    def encode(self, text: str) -> list[int]:
        return [self._to_local[c] for c in text if c in self._to_local]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The text's UTF-8 bytes; a vocabulary entry that is no text (a lone surrogate) becomes "?"."""
        return self.decode(ids).encode("utf-8", errors="replace")

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.vocab[i] for i in ids if 0 <= i < self.bos_id)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "vocab": self.vocab}


def any_tokenizer_from_dict(d: dict, bpe_file: str | None = None) -> Tokenizer | GoBPETokenizer | GoCharTokenizer:
    """Rebuild a tokenizer from its to_dict, ours or the original's (an export of a Go checkpoint holds one)."""
    if d.get("kind") == GoBPETokenizer.kind:
        return GoBPETokenizer(d.get("token_ids"), d.get("encoding", CL100K), bpe_file)
    if d.get("kind") == GoCharTokenizer.kind:
        return GoCharTokenizer(d.get("vocab"))
    return tokenizer_from_dict(d, bpe_file)
