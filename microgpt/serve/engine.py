"""The decoding loop behind `microgpt serve`: every live request advances one token per step, together.

The requests admitted in one step are prefilled together (their prompts through a plain KV cache, padded to
the longest where that wastes little), then join the SlotCache batch; each step runs ONE forward pass for all
live sequences and samples all rows at once, each with that request's own settings and random generator. A
sequence leaves the batch when it ends (end-of-text, a stop string, its token limit) or when its client goes
away. A row's distribution is computed exactly as it is alone and its generator draws as it does alone; only
BLAS's summation order differs with the batch (the last float32 bit of a logit), so a reply of a trained model
is the same whether the request ran alone or beside seven others (same seed, same settings), as the tests and
`bench --serve` check; where two tokens tie within that bit at a top-k or top-p cut (an untrained model's
unseen tokens), the bit can decide.

The loop runs on one thread of its own; callers hand in a `Job` and receive its events through `job.emit`,
called on that thread: ("text", piece) as soon as a piece can no longer turn into a stop string, then
("done", finish_reason) with finish_reason "stop" or "length".
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from microgpt.autograd import no_grad
from microgpt.chat.session import ReplyText
from microgpt.data.tokenizer import TokenCodec
from microgpt.nn import GPT, KVCache
from microgpt.nn.sampling import SamplingSettings, draw_tokens, kept_after_slide, next_token_distributions
from microgpt.nn.slots import slot_cache_for
from microgpt.serve.settings import ServeSettings

Event = tuple[str, str]


@dataclass
class Job:
    """One request: prompt ids, sampling settings, stop strings, and where its events go."""

    prompt_ids: list[int]
    settings: SamplingSettings
    stops: tuple[str, ...]
    emit: Callable[[Event], None]
    strip_leading_space: bool = False  # a chat reply starts after "Assistant:"; its first space is template
    labels: tuple[str, ...] = ()  # the chat template's turn labels (see ReplyText.rest); none for a completion
    stream: bool = True  # emit pieces as they become certain; False: the whole text once, at the end
    ended: bool = False  # its last event ("done" or "error") was sent: nothing more is emitted
    cancelled: bool = False
    generated: list[int] = field(default_factory=list)
    reply: ReplyText | None = None  # the reply's text so far, made by the engine at the first token
    rng: np.random.Generator | None = None
    logits: np.ndarray | None = None

    @property
    def completion_tokens(self) -> int:
        return len(self.generated)


PAD_SLACK = 1.25  # prompts prefilled together may pad to at most this many times their own tokens


def _prefill_groups(jobs: list[Job]) -> list[list[Job]]:
    """The jobs in groups to prefill together: longest prompts first, each group growing while padding every
    prompt to its longest costs at most PAD_SLACK times the group's real tokens (equal lengths: one group)."""
    groups: list[list[Job]] = []
    for job in sorted(jobs, key=lambda job: -len(job.prompt_ids)):
        group = groups[-1] if groups else []
        tokens = sum(len(member.prompt_ids) for member in group) + len(job.prompt_ids)
        if group and (len(group) + 1) * len(group[0].prompt_ids) <= PAD_SLACK * tokens:
            group.append(job)
        else:
            groups.append([job])
    return groups


class Busy(Exception):
    """Every row is decoding and as many requests as the engine lets wait are already waiting."""


class Engine:
    """Owns the model and the batch; `submit` is safe to call from any thread."""

    def __init__(self, model: GPT, tokenizer: TokenCodec, max_batch: int = ServeSettings.max_batch,
                 max_waiting: int = ServeSettings.max_waiting) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.max_waiting = max_waiting
        self.slots = slot_cache_for(model, max_batch)
        self.rows: list[Job] = []  # rows[i] lives in slot i
        self.pending: list[Job] = []
        self.preparing = 0  # requests admitted (admit) whose prompts are still being read and tokenized
        self.lock = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name="microgpt-decoder", daemon=True)
        self.thread.start()

    def admit(self) -> None:
        """Hold a place for a request before its prompt is parsed and tokenized (work a refused request must
        not cost); Busy if it would wait behind `max_waiting` others for a row. Then submit(job, admitted=True)
        takes the place, or release() gives it back."""
        with self.lock:
            self._check_room()
            self.preparing += 1

    def release(self) -> None:
        """Give back a place admit() held, for a request that ends before its job is submitted."""
        with self.lock:
            self.preparing -= 1

    def submit(self, job: Job, admitted: bool = False) -> None:
        """Queue `job` for the next step, in the place admit() held for it if `admitted`; Busy if it would wait
        behind `max_waiting` others for a row (or the server is stopping)."""
        with self.lock:
            if admitted:
                self.preparing -= 1
            if self.stopping or not admitted:
                self._check_room()
            self.pending.append(job)
            self.lock.notify()

    def _check_room(self) -> None:
        """Busy unless one more request fits the rows and the queue (the lock is held)."""
        if self.stopping:
            raise Busy("the server is stopping")
        queued = sum(not waiting.cancelled for waiting in self.pending) + self.preparing
        # a row whose reply has ended (or whose client left) is free, though the decoder retires it a moment later
        decoding = sum(not (job.ended or job.cancelled) for job in list(self.rows))
        if queued + 1 + decoding - self.max_batch > self.max_waiting:
            raise Busy(f"{decoding} sequences decoding and {queued} queued for {self.max_batch} rows; "
                       f"at most {self.max_waiting} may wait for a row")

    def stats(self) -> dict[str, int]:
        """Sequences decoding now and requests waiting for a free row."""
        with self.lock:
            return {"decoding": len(self.rows), "waiting": len(self.pending)}

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            self.lock.notify()
        self.thread.join(timeout=10)

    # ----- the loop -------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self.lock:
                while not (self.pending or self.rows or self.stopping):
                    self.lock.wait()
                if self.stopping:  # nobody waits forever: what is still decoding or queued hears why it ends
                    for job in [*self.rows, *self.pending]:
                        self._fail(job, "the server is stopping")
                    return
                self.pending = [job for job in self.pending if not job.cancelled]  # gone before their turn
                admitted = self.pending[:self.slots.free]
                del self.pending[:len(admitted)]
            try:
                with no_grad():
                    for group in _prefill_groups(admitted):
                        self._prefill_together(group)
                    self._step()
            except Exception as exc:  # noqa: BLE001 - whatever breaks, no client may be left waiting forever
                for job in {id(j): j for j in [*self.rows, *admitted]}.values():
                    self._fail(job, f"{type(exc).__name__}: {exc}")
                self.rows.clear()
                self.slots.n = 0

    def _prefill_together(self, jobs: list[Job]) -> None:
        """Prefill `jobs` in one forward pass, their prompts padded on the right to the longest (causal attention:
        a prompt's positions never see the padding after them). If that fails (attention that does not fit in
        memory, say), each is prefilled alone, so that only a request that fails alone gets the error and the
        rows already decoding are not touched."""
        if len(jobs) > 1:
            longest = max(len(job.prompt_ids) for job in jobs)
            ids = np.zeros((len(jobs), longest), dtype=np.int64)
            for row, job in enumerate(jobs):
                ids[row, :len(job.prompt_ids)] = job.prompt_ids
            try:
                cache = self.model.new_cache(len(jobs))
                logits = self.model(ids, cache).data
            except Exception:  # noqa: BLE001 - each is tried alone below, where a failure is only its own
                logits = None
            if logits is not None:
                for row, job in enumerate(jobs):
                    self._join(job, logits[row, len(job.prompt_ids) - 1], cache, row)
                return
        for job in jobs:
            try:
                cache = self.model.new_cache(1)
                self._join(job, self.model(np.asarray([job.prompt_ids]), cache).data[0, -1], cache, 0)
            except Exception as exc:  # noqa: BLE001 - one request's failure is that request's 500, nobody else's
                self._fail(job, f"{type(exc).__name__}: {exc}")

    def _join(self, job: Job, logits: np.ndarray, cache: KVCache, row: int) -> None:
        """A prefilled job takes a slot: its row of the prefill cache, its last position's logits, its generator."""
        job.logits = logits
        job.rng = np.random.default_rng(job.settings.seed)
        self.slots.add(cache, row, len(job.prompt_ids))
        self.rows.append(job)

    @staticmethod
    def _fail(job: Job, message: str) -> None:
        """End `job` with an error event, unless it has already ended."""
        if not job.ended:
            job.ended = True
            job.emit(("error", message))

    def _step(self) -> None:
        """Sample one token for every live row, retire the finished ones, run the rest one position on.

        A row whose context window is full goes on from the last half of its text, re-encoded alone into a
        fresh row, as `generate` does for `chat`: the window slides, and the reply is the one `chat` gives.
        """
        live = [job for job in self.rows if not job.cancelled]
        going_on = {id(job) for job, token in zip(live, self._sample(live)) if not self._advance_alone(job, token)}
        block = self.slots.block_size
        sliding = [job for slot, job in enumerate(self.rows)
                   if id(job) in going_on and self.slots.lengths[slot] >= block]
        leaving = [slot for slot, job in enumerate(self.rows)
                   if id(job) not in going_on or self.slots.lengths[slot] >= block]
        for slot in reversed(leaving):  # highest first, so each moved row comes from a slot still live
            moved = self.slots.remove(slot)
            if moved is None:
                self.rows.pop(slot)
            else:
                self.rows[slot] = self.rows.pop(moved)
        try:
            if self.rows:
                tokens = np.asarray([[job.generated[-1]] for job in self.rows])
                logits = self.model(tokens, self.slots).data[:, 0]
                for job, row in zip(self.rows, logits):
                    job.logits = row
        finally:  # the sliding rows are out of self.rows: each rejoins, or hears its own error, whatever happened
            for job in sliding:
                self._slide(job, kept_after_slide(block))

    def _slide(self, job: Job, keep: int) -> None:
        """Re-encode the last `keep` tokens of a job's text alone into a fresh row; a failure ends that job."""
        try:
            context = [*job.prompt_ids, *job.generated][-keep:]
            cache = self.model.new_cache(1)
            job.logits = self.model(np.asarray([context]), cache).data[0, -1]
            self.slots.add(cache, 0, len(context))
            self.rows.append(job)
        except Exception as exc:  # noqa: BLE001 - its client is told; the other rows decode on
            self._fail(job, f"{type(exc).__name__}: {exc}")

    @staticmethod
    def _sample(jobs: list[Job]) -> list[int]:
        """Every row's next token at once, each with its own settings and random generator."""
        if not jobs:
            return []
        p = next_token_distributions(np.stack([job.logits for job in jobs]), [job.generated for job in jobs],
                                     [job.settings for job in jobs], [len(job.generated) for job in jobs])
        return draw_tokens(p, [None if job.settings.temperature <= 0 else job.rng for job in jobs])

    def _advance_alone(self, job: Job, token: int) -> bool:
        """_advance, with what goes wrong in one reply (its text, say) ending that reply alone, not the batch."""
        try:
            return self._advance(job, token)
        except Exception as exc:  # noqa: BLE001 - not swallowed: the client is told, and its row retires
            self._fail(job, f"{type(exc).__name__}: {exc}")
            return True

    def _advance(self, job: Job, token: int) -> bool:
        """Take the job's next token and emit what became certain; True when the job is over."""
        s = job.settings
        if token in s.stop_token_ids:
            return self._finish(job, "stop")
        job.generated.append(token)
        if job.reply is None:
            job.reply = ReplyText(self.tokenizer, job.stops, strip=job.strip_leading_space, labels=job.labels)
        if job.reply.add(token):
            return self._finish(job, "stop")
        if len(job.generated) >= s.max_new_tokens:
            return self._finish(job, "length")
        if job.stream:  # nobody reads pieces otherwise: waking the caller's thread every token only costs time
            piece = job.reply.certain()
            if piece:
                job.emit(("text", piece))
        return False

    def _finish(self, job: Job, reason: str) -> bool:
        piece = job.reply.rest() if job.reply is not None else ""
        if piece:
            job.emit(("text", piece))
        job.ended = True
        job.emit(("done", reason))
        return True
