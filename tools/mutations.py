"""Plant known bugs one at a time and check that the test suite catches each: a test of the tests.

    python tools/mutations.py              # every mutation
    python tools/mutations.py NAME ...     # only these (see --list)

The working tree is copied to a temporary folder once. For each mutation, one exact snippet of one source
file is replaced in the copy, only the test files that guard that code run there (`python -m pytest -q -x`,
with PYTHONPATH and CI set to the copy and to true), and the file is restored. A mutation is "caught" when
those tests fail. The unmutated copy must first pass the same tests, or every mutation would look caught.

Each mutation names its file as candidate paths or globs (code moves: list the old and new homes), and its
snippet must occur exactly once in exactly one candidate: a snippet that is not found (the code changed) or
that is ambiguous is reported, and, like a missed mutation, makes the exit code 1. Not part of the default
test suite (it runs the guarded tests once per mutation: minutes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT_HOMES = ("microgpt/train/checkpoint.py", "microgpt/storage/*.py")
FUNCTIONAL = ("microgpt/autograd/functional.py", "microgpt/autograd/attention.py")
ATTENTION_TESTS = ("tests/test_functional.py", "tests/test_blocked_attention.py")
FUSED_LOSS_TESTS = ("tests/test_fused_loss.py", "tests/test_gpt.py", "tests/test_train_step.py")
SAVE_TESTS = ("tests/test_checkpoint_save.py",)
RUN_TIMEOUT_S = 900


@dataclass(frozen=True)
class Mutation:
    """Replace `old` (exactly once, in one of `paths`) by `new`, then run `tests`."""

    name: str
    bug: str
    paths: tuple[str, ...]
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = [
    Mutation("attention-scale", "the 1/sqrt(D) attention scale dropped", FUNCTIONAL,
             "    scale = 1.0 / math.sqrt(D)\n", "    scale = 1.0\n", ATTENTION_TESTS),
    Mutation("causal-mask-off-by-one", "each query also sees the next key", FUNCTIONAL,
             "k=Tk - Tq + 1)", "k=Tk - Tq + 2)", ATTENTION_TESTS),
    Mutation("rotary-backward-same-turn", "RoPE's backward turns the gradient forward again, not back", FUNCTIONAL,
             "(turn_qk(g, np.conj(turns)),)", "(turn_qk(g, turns),)", ATTENTION_TESTS),
    Mutation("rotary-frequency", "RoPE's frequencies spaced by j/D instead of 2j/D", FUNCTIONAL,
             "freq = ROPE_BASE ** (-np.arange(half) / half)", "freq = ROPE_BASE ** (-np.arange(half) / head_dim)",
             ("tests/test_functional.py", "tests/test_torch_parity.py")),
    Mutation("rope-cache-position", "the KV-cached step turns q and k as if at position 0",
             ("microgpt/nn/gpt.py",), "        turns = self.rotary_turns(pos)\n",
             "        turns = self.rotary_turns(slice(0, T) if T == 1 else pos)\n", ("tests/test_gpt.py",)),
    Mutation("sub-backward-sign", "d(a-b)/db = +1", ("microgpt/autograd/tensor.py",),
             "(unbroadcast(-g, b.shape) if b.requires_grad else None)",
             "(unbroadcast(g, b.shape) if b.requires_grad else None)", ("tests/test_autograd_ops.py",)),
    Mutation("div-backward-sign", "d(a/b)/db = +a/b^2", ("microgpt/autograd/tensor.py",),
             "gb = unbroadcast(-g * out / b.data, b.shape)", "gb = unbroadcast(g * out / b.data, b.shape)",
             ("tests/test_autograd_ops.py",)),
    Mutation("adam-bias-correction", "Adam's first-moment bias correction removed", ("microgpt/nn/optim.py",),
             "step_size = self.lr / (1.0 - b1**t)", "step_size = self.lr", ("tests/test_optim.py",)),
    Mutation("unbroadcast-wrong-axis", "leading broadcast dims summed one axis too far right",
             ("microgpt/autograd/tensor.py",), "grad = grad.sum(axis=tuple(range(extra)))",
             "grad = grad.sum(axis=tuple(range(1, extra + 1)))",
             ("tests/test_autograd_engine.py", "tests/test_autograd_ops.py")),
    Mutation("byte-fallback-drops-a-byte", "an unknown character falls back to one byte too few",
             ("microgpt/data/tokenizer.py",), "widths = np.where(local >= 0, 1, _utf8_length(points))",
             "widths = np.where(local >= 0, 1, np.maximum(_utf8_length(points) - 1, 1))", ("tests/test_tokenizer.py",)),
    Mutation("duplicate-ids-unreported", "a duplicate id passes validation", ("microgpt/data/dataset.py",),
             'problems.append(f"duplicate id {shown(record_id)} (first used on line {first_use[record_id]})")', "pass",
             ("tests/test_dataset_validation.py",)),
    Mutation("duplicate-id-first-line-overwritten", "'first used on line N' names the previous use, not the first",
             ("microgpt/data/dataset.py",), "        elif record_id is not None:\n            first_use[record_id]",
             "        if record_id is not None:\n            first_use[record_id]", ("tests/test_dataset_validation.py",)),
    Mutation("fused-loss-onehot-sign", "the one-hot term of linear_cross_entropy's gradient added, not subtracted",
             FUNCTIONAL, "e[t, index] -= total  #", "e[t, index] += total  #", FUSED_LOSS_TESTS),
    Mutation("fused-loss-no-max-shift", "linear_cross_entropy's forward without its max shift", FUNCTIONAL,
             "if x_norm[r0:r1].max(initial=0.0) * w_norm <= EXP_SAFE:", "if True:",
             FUSED_LOSS_TESTS),
    Mutation("fused-loss-dW-overwritten", "only the last row block's dL/dW kept", FUNCTIONAL,
             "                    dW += part\n", "                    dW = part.copy()\n", FUSED_LOSS_TESTS),
    Mutation("fused-loss-upstream-ignored", "linear_cross_entropy's backward ignores the upstream gradient",
             FUNCTIONAL, "        scale = float(g)  #", "        scale = 1.0  #", FUSED_LOSS_TESTS),
    Mutation("fused-loss-ignored-rows-train", "ignored targets still get a softmax gradient", FUNCTIONAL,
             "scale = (counted / (max(n, 1) * total))", "scale = (1.0 / (max(n, 1) * total))", FUSED_LOSS_TESTS),
    Mutation("fused-route-first-rows", "cross_entropy of linear's logits reads every block from the first rows",
             FUNCTIONAL, "e[...] = Z[r0:r1].T", "e[...] = Z[:r1 - r0].T",
             ("tests/test_fast_paths.py",)),
    Mutation("deferred-logits-share-W", "deferred logits read W as it is when read, not as it was in the forward",
             FUNCTIONAL, "X2, W = X2.copy(), W.copy()", "X2 = X2.copy()", ("tests/test_fast_paths.py",)),
    Mutation("deferred-logits-made-by-the-loss", "cross_entropy makes the deferred logits it does not need",
             FUNCTIONAL, "made = None if isinstance(logits, Deferred) and logits.pending else logits.data",
             "made = logits.data", ("tests/test_fast_paths.py",)),
    Mutation("mlp-region-w2-first-rows", "each thread's share of relu_mlp's dW2 reads the first hidden rows",
             FUNCTIONAL, "w2_parts[lo] = g2[lo:hi].T @ h[lo:hi]", "w2_parts[lo] = g2[lo:hi].T @ h[:hi - lo]",
             ("tests/test_fast_paths.py",)),
    Mutation("run-split-helper-ranges", "the helpers' ranges stop short of the end", ("microgpt/autograd/parallel.py",),
             "bounds = [0] + [first + (n - first) * i // (parts - 1) for i in range(parts)]",
             "bounds = [0] + [first + (n - first) * i // parts for i in range(parts)]", ("tests/test_fast_paths.py",)),
    Mutation("run-split-fractional-units", "the split's time estimate counts fractions of units, not whole ones",
             ("microgpt/autograd/parallel.py",), "return (-(-n // parts) * work / n + MIN_PART_WORK",
             "return (work / parts + MIN_PART_WORK", ("tests/test_fast_paths.py",)),
    Mutation("split-ignores-lock-turns", "parts that make many NumPy calls are split as if they made none",
             ("microgpt/autograd/parallel.py",), "+ (parts - 1) * calls * CALL_WORK)", ")", ("tests/test_fast_paths.py",)),
    Mutation("split-every-part-full-handoff", "every part past one costs a first hand-off",
             ("microgpt/autograd/parallel.py",), "MIN_PART_WORK + (parts - 2) * MORE_PART_WORK",
             "(parts - 1) * MIN_PART_WORK", ("tests/test_fast_paths.py",)),
    Mutation("partial-sums-unordered", "the threads' partial sums are added in the order they were made",
             FUNCTIONAL, "arrays = [parts[lo] for lo in sorted(parts)]", "arrays = list(parts.values())",
             ("tests/test_fast_paths.py",)),
    Mutation("gradient-home-twice", "a leaf's optimizer buffer is handed to every op that asks in one pass",
             ("microgpt/autograd/tensor.py",), "or self.grad_home is None or self._home_pass == running):",
             "or self.grad_home is None):", ("tests/test_optim.py",)),
    Mutation("gradient-home-outside-backward", "an op outside any backward pass is handed a leaf's buffer",
             ("microgpt/autograd/tensor.py",), "if (not running or self._backward", "if (self._backward",
             ("tests/test_optim.py",)),
    Mutation("sum-parts-into-out-second-twice", "summing the threads' parts into a buffer adds the second twice",
             FUNCTIONAL, "        for part in arrays[2:]:", "        for part in arrays[1:]:",
             ("tests/test_optim.py", "tests/test_fast_paths.py")),
    Mutation("weight-gradient-every-part-into-out", "every thread's share of g^T x is written into the buffer",
             FUNCTIONAL, "whole = out is not None and lo == 0 and hi == g.shape[0]", "whole = out is not None",
             ("tests/test_optim.py",)),
    Mutation("rms-norm-drops-taken-gradient", "rms_norm takes x's gradient from the walk but does not add it in",
             FUNCTIONAL, "                if sent is not None:\n                    dx += sent[lo:hi]\n", "",
             ("tests/test_functional.py",)),
    Mutation("adam-eps-not-rescaled", "Adam's eps added to sqrt(v) without the bias correction taken out with it",
             ("microgpt/nn/optim.py",), "tmp += self.eps / root_v_hat", "tmp += self.eps", ("tests/test_optim.py",)),
    Mutation("run-split-helper-error-swallowed", "an exception in a helper's range is dropped",
             ("microgpt/autograd/parallel.py",), "            if error is not None:\n                raise error\n",
             "            if error is not None:\n                pass\n", ("tests/test_fast_paths.py",)),
    Mutation("grad-home-added-to", "a first gradient is added to its home's stale values, not written over them",
             ("microgpt/autograd/tensor.py",), "np.copyto(node.grad_home, g)", "node.grad_home += g",
             ("tests/test_optim.py",)),
    Mutation("gather-grads-stale", "a parameter backward did not reach steps with last step's gradient",
             ("microgpt/nn/optim.py",), "            self._reached[i] = p.grad is not None\n",
             "            self._reached[i] = True\n", ("tests/test_optim.py",)),
    Mutation("adam-grad-buffer-kept", "a .grad kept from one step is written over by the next backward",
             ("microgpt/nn/optim.py",), "        self.flat_grad = np.empty_like(self.flat_grad)\n        self._give_grad_homes()\n",
             "", ("tests/test_optim.py",)),
    Mutation("greedy-draw-first-zero", "greedy rows take their first token of zero probability",
             ("microgpt/nn/sampling.py",), "return (p > 0).argmax(axis=1).tolist()",
             "return (p > 0).argmin(axis=1).tolist()", ("tests/test_sampling.py",)),
    Mutation("blocked-attention-dK", "blocked attention's dK += becomes dK =", FUNCTIONAL,
             "dK[..., :kend, :] += into_k", "dK[..., :kend, :] = into_k", ATTENTION_TESTS),
    Mutation("blocked-attention-dV", "blocked attention's dV += becomes dV =", FUNCTIONAL,
             "dV[..., :kend, :] += into_v", "dV[..., :kend, :] = into_v", ATTENTION_TESTS),
    Mutation("blocked-attention-sums-not-copied", "blocked attention's summed dK is never copied into the gradient",
             FUNCTIONAL, "dKw[c0:c1], dVw[c0:c1] = dK, dV", "dVw[c0:c1] = dV", ATTENTION_TESTS),
    Mutation("blocked-attention-sums-full-length", "blocked attention's last chunk copies out the sums' full length",
             FUNCTIONAL, "(dK_sum[:n], dV_sum[:n]) if summed", "(dK_sum, dV_sum) if summed", ATTENTION_TESTS),
    Mutation("attention-r-unscaled", "attention's backward shifts dP by rowsum(G O) without the 1/s",
             FUNCTIONAL, "-inv_s, out=G_r[..., Dv:]", "-1.0, out=G_r[..., Dv:]", ATTENTION_TESTS),
    Mutation("attention-dq-unscaled", "attention's dQ uses k^T without the 1/sqrt(D) the forward folded in",
             FUNCTIONAL, "np.matmul(dS, kT[..., :kend].swapaxes(-1, -2)", "np.matmul(dS, Kw[c0:c1][..., :kend, :]",
             ATTENTION_TESTS),
    Mutation("skinny-matmul-column-offset", "each thread's share of the transposed few-row product reads b's first "
             "columns", FUNCTIONAL, "np.matmul(b.T[lo:hi], a.T, out=tall[lo:hi])",
             "np.matmul(b.T[:hi - lo], a.T, out=tall[lo:hi])", ("tests/test_fast_paths.py",)),
    Mutation("cross-entropy-target-of-first-block", "every block of cross_entropy's gradient subtracts at the first "
             "block's targets", FUNCTIONAL, "out[hit, safe_t[r0:r1][hit]] -= inv_n", "out[hit, safe_t[hit]] -= inv_n",
             ("tests/test_functional.py", "tests/test_fast_paths.py")),
    Mutation("checkpoint-plain-open", "save_checkpoint writes with a plain open (no temp, fsync, rename)",
             CHECKPOINT_HOMES, 'with atomic_open(path, "wb") as f:', 'with open(path, "wb") as f:', SAVE_TESTS),
    Mutation("atomic-write-no-fsync", "the temp file is renamed without an fsync", ("microgpt/atomic.py",),
             "            handle.flush()\n            os.fsync(handle.fileno())\n", "            handle.flush()\n",
             SAVE_TESTS),
    Mutation("atomic-write-leaves-temp", "a failed write leaves its temp file behind", ("microgpt/atomic.py",),
             "            os.unlink(tmp_name)\n", "            pass\n", SAVE_TESTS),
    Mutation("wsd-decays-too-early", "the wsd schedule starts its decay from the first step", ("microgpt/nn/optim.py",),
             "min(1.0, (1.0 - progress) / decay_fraction)", "(1.0 - progress)", ("tests/test_optim.py",)),
    Mutation("muon-no-nesterov", "Muon steps along its momentum instead of looking one momentum step ahead",
             ("microgpt/nn/optim.py",), "u = g + mu * m\n", "u = m\n", ("tests/test_optim.py",)),
    Mutation("orthogonalise-wrong-gram", "Newton-Schulz multiplies by X^T X on the wrong side",
             ("microgpt/nn/optim.py",), "gram = x @ x.transpose(0, 2, 1)  # (N, r, r)",
             "gram = x.transpose(0, 2, 1) @ x  # (N, r, r)", ("tests/test_optim.py",)),
    Mutation("orthogonalise-gram-form-no-p", "the wide form's step forgets P in X_k X_k^T",
             ("microgpt/nn/optim.py",), "m = p @ gram @ p", "m = gram", ("tests/test_optim.py",)),
    Mutation("muon-scale-min-side", "Muon scales its step by the smaller side of the matrix",
             ("microgpt/nn/optim.py",), "math.sqrt(cols)", "math.sqrt(rows)", ("tests/test_optim.py",)),
    Mutation("muon-tall-not-transposed", "Muon stacks a tall matrix's momentum without turning it the wide way",
             ("microgpt/nn/optim.py",), "return values if p.shape[0] <= p.shape[1] else values.T",
             "return values if p.shape[0] <= p.shape[1] else values.reshape(p.shape[::-1])", ("tests/test_optim.py",)),
    Mutation("muon-split-first-part", "each thread of Muon's split updates the first matrices of the stack",
             ("microgpt/nn/optim.py",), "self._update(part[lo:hi], cols)", "self._update(part[:hi - lo], cols)",
             ("tests/test_optim.py",)),
    Mutation("adam-no-subnormal-flush", "Adam never flushes its subnormal moments", ("microgpt/nn/optim.py",),
             "        if self.t % FLUSH_EVERY == 0:\n", "        if False:\n", ("tests/test_optim.py",)),
    Mutation("adam-flush-normal-moments", "Adam's flush also zeroes small normal moments", ("microgpt/nn/optim.py",),
             "        m[tmp < tiny] = 0\n", "        m[tmp < 1e-2] = 0\n", ("tests/test_optim.py",)),
    Mutation("attend-newest-unscaled", "a generated token's attention forgets 1/sqrt(D)", FUNCTIONAL,
             "    scores *= 1.0 / math.sqrt(q.shape[-1])\n", "", ("tests/test_fast_paths.py", "tests/test_gpt.py")),
    Mutation("step-one-row-columns", "a single row through a wide weight writes every range into the first columns",
             FUNCTIONAL, "np.matmul(a, b[:, lo:hi], out=out[:, lo:hi])", "np.matmul(a, b[:, lo:hi], out=out[:, :hi - lo])",
             ("tests/test_fast_paths.py",)),
    Mutation("block-step-no-mlp-gain", "the generation step skips the MLP norm's learned gain", ("microgpt/nn/layers.py",),
             "h = self.mlp_norm.apply(x).reshape(B, C)", "h = F.rms_rows(x).reshape(B, C)", ("tests/test_gpt.py",)),
    Mutation("line-append-not-cut-back", "a full disk leaves half a line for the next append to glue onto",
             ("microgpt/atomic.py",), "                os.ftruncate(self._fd, start)\n", "                pass\n",
             ("tests/test_reliability_data_loss.py",)),
    Mutation("negative-token-ids-wrap", "a token id of -1 reads the last embedding row without a word",
             ("microgpt/nn/layers.py",), "idx.min() < 0 or ", "", ("tests/test_api_misuse.py",)),
    Mutation("new-run-overwrites-earlier", "a new run writes over an unfinished run's only best and latest",
             ("microgpt/train/trainer.py",), "            self._keep_earlier(path)\n", "            pass\n",
             ("tests/test_training.py",)),
    Mutation("range-start-unchecked", "a resumed download appends a reply that starts at another byte",
             ("microgpt/data/download.py",), "if response.status == 206 and (start := _range_start(response)) != have:",
             "if response.status == 206 and (start := _range_start(response)) != have and not have:",
             ("tests/test_download.py",)),
    Mutation("best-needs-min-delta", "the best checkpoint is saved only on a drop past EARLY_STOP_MIN_DELTA",
             ("microgpt/train/trainer.py",), "        improved = val < p.best_val_loss",
             "        improved = p.best_val_loss - val > cfg.early_stop_min_delta", ("tests/test_training.py",)),
    Mutation("resume-a-finished-run", "a resume with nothing left to train rewrites its final checkpoint",
             ("microgpt/train/resume.py",), "    _check_steps_left(cfg, checkpoint.meta)\n", "",
             ("tests/test_probe_knobs.py",)),
    Mutation("duplicate-keys-last-wins", "a JSON object with a key twice keeps its last value silently",
             ("microgpt/safe_io.py",), "    if len(obj) < len(pairs):\n", "    if False:\n",
             ("tests/test_config.py", "tests/test_serve.py")),
    Mutation("knob-in-two-spellings", "a config file naming one knob in both spellings keeps the last silently",
             ("microgpt/config/parse.py",), "            if knob.name in spelled:", "            if False:",
             ("tests/test_config.py",)),
    Mutation("final-over-default-best", "MODEL_OUT_PATH may name the default best checkpoint, which it overwrites",
             ("microgpt/train/outputs.py",),
             'best = Path(model_best_path) if model_best_path else models / checkpoint_name("best")',
             'best = Path(model_best_path) if model_best_path else models / "no-such-file"',
             ("tests/test_reliability_outputs.py",)),
    Mutation("npz-fifo-opened", "an .npz that is a FIFO is opened, and the read waits for a writer forever",
             ("microgpt/safe_io.py",), "    if not stat.S_ISREG(info.st_mode):", "    if False:",
             ("tests/test_reliability_bounds.py",)),
    Mutation("bench-one-batch", "bench steps on one batch over and over, which the model learns by heart",
             ("microgpt/bench/throughput.py",), "    return itertools.cycle(_batch_pool(cfg, seed))",
             "    return itertools.repeat(_batch_pool(cfg, seed)[0])", ("tests/test_bench.py",)),
    Mutation("resume-forgets-the-runs-best", "a resume from an older checkpoint overwrites the lower best saved later",
             ("microgpt/train/trainer.py",), "and held < self.progress.best_val_loss:", "and held < -1e30:",
             ("tests/test_training.py",)),
    Mutation("getitem-grad-into-a-copy", "a column-major tensor's gathered gradient is added into a copy",
             ("microgpt/autograd/tensor.py",), "full = np.zeros(x.shape, dtype=x.dtype)", "full = np.zeros_like(x)",
             ("tests/test_autograd_ops.py",)),
    Mutation("log-written-after-delete", "a run whose LOG_DIR was deleted writes on into files no one can reach",
             ("microgpt/atomic.py",), "            if held.st_nlink == 0 and self._counts_links:", "            if False:",
             ("tests/test_reliability_outputs.py",)),
    Mutation("resume-logs-steps-twice", "a resume after kill -9 logs the steps its checkpoint lacks a second time",
             ("microgpt/train/artifacts.py",), "        if len(kept) < len(lines):", "        if False:",
             ("tests/test_reliability_stopping.py",)),
    Mutation("zombie-holds-the-lock", "a dead (zombie) trainer's lock keeps the folder forever",
             ("microgpt/atomic.py",), "        if process.status() == psutil.STATUS_ZOMBIE:", "        if False:",
             ("tests/test_reliability_data_loss.py",)),
    Mutation("encode-concat-offsets-per-chunk", "a dataset of more than one chunk of texts gets wrong offsets",
             ("microgpt/data/tokenizer.py",), "offset_parts.append(offsets[1:] + total)",
             "offset_parts.append(offsets[1:])", ("tests/test_tokenizer.py",)),
    Mutation("cache-key-no-seed", "another SEED reuses the first run's cached split and vocabulary",
             ("microgpt/train/data_pipeline.py",), '"val_split": cfg.val_split, "seed": cfg.seed, ',
             '"val_split": cfg.val_split, ', ("tests/test_reliability_loaders.py",)),
    Mutation("resume-tokens-seen-lost", "a resumed run counts its tokens from zero again",
             ("microgpt/train/trainer.py",), 'tokens_seen=meta["tokens_seen"],', "tokens_seen=0,",
             ("tests/test_training.py",)),
    Mutation("resume-patience-mark-lost", "a resumed run counts patience from its best loss, not its mark",
             ("microgpt/train/trainer.py",), 'patience_mark=meta.get("patience_mark", meta["best_val_loss"]),',
             'patience_mark=meta["best_val_loss"],', ("tests/test_training.py",)),
    Mutation("atomic-folder-no-restore", "a re-export whose last rename fails loses the previous export",
             ("microgpt/atomic.py",), "            os.replace(aside, target)\n", "            pass\n", SAVE_TESTS),
    Mutation("atomic-mode-not-kept", "saving over a private (0600) file makes it world-readable",
             ("microgpt/atomic.py",), "        return target.stat().st_mode & 0o777", "        return 0o644", SAVE_TESTS),
    Mutation("serve-admission-leaks", "a refused request keeps its place: the server fills with ghosts",
             ("microgpt/serve/app.py",), "            if not handed_over:  # a bad request, or a client gone while it was prepared\n"
             "                self.engine.release()\n", "            pass\n", ("tests/test_probe_serve.py",)),
    Mutation("serve-ended-row-busy", "a row whose reply has ended still counts as decoding",
             ("microgpt/serve/engine.py",), "decoding = sum(not (job.ended or job.cancelled) for job in list(self.rows))",
             "decoding = len(self.rows)", ("tests/test_probe_serve.py",)),
    Mutation("nohup-ignored", "a run under nohup stops when its terminal closes",
             ("microgpt/console.py",), "    return [sig for sig in found if signal.getsignal(sig) is not signal.SIG_IGN]",
             "    return found", ("tests/test_reliability_stopping.py",)),
]


def locate(root: Path, mutation: Mutation) -> tuple[Path | None, str]:
    """The one file under `root` that holds the snippet exactly once, or None and why not."""
    candidates = sorted({p for pattern in mutation.paths for p in root.glob(pattern) if p.is_file()})
    if not candidates:
        return None, f"pattern not found: no file matches {', '.join(mutation.paths)}"
    hits = [(p, p.read_text(encoding="utf-8").count(mutation.old)) for p in candidates]
    found = [(p, n) for p, n in hits if n]
    if not found:
        return None, f"pattern not found in {', '.join(str(p.relative_to(root)) for p in candidates)}"
    if len(found) > 1 or found[0][1] > 1:
        where = ", ".join(f"{p.relative_to(root)} x{n}" for p, n in found)
        return None, f"pattern ambiguous ({where}): make the snippet longer"
    return found[0][0], str(found[0][0].relative_to(root))


def run_tests(root: Path, tests: tuple[str, ...]) -> tuple[int, float, str]:
    """(exit code, seconds, first failed test and pytest's last line) of the test files in the copy; -1 on
    timeout."""
    env = {**os.environ, "PYTHONPATH": str(root), "CI": "true"}
    env.pop("HYPOTHESIS_PROFILE", None)
    started = time.perf_counter()
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                                cwd=root, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return -1, time.perf_counter() - started, f"timed out after {RUN_TIMEOUT_S} s"
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    failed = [line.split(" - ")[0] for line in lines if line.startswith(("FAILED ", "ERROR "))]
    summary = (failed[:1] + lines[-1:]) or [result.stderr.strip()[-200:]]
    return result.returncode, time.perf_counter() - started, "; ".join(summary)


def copy_tree(destination: Path) -> Path:
    root = destination / "repo"
    shutil.copytree(REPO_ROOT, root, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.pyc", ".hypothesis", ".pytest_cache", ".ruff_cache", "logs", "models"))
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutations to plant (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = parser.parse_args(argv)
    by_name = {m.name: m for m in MUTATIONS}
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:38} {m.bug}")
        return 0
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        parser.error(f"unknown mutation(s) {', '.join(unknown)}; see --list")
    chosen = [by_name[n] for n in args.names] or MUTATIONS
    with tempfile.TemporaryDirectory(prefix="microgpt-mutations-") as tmp:
        root = copy_tree(Path(tmp))
        guarded = tuple(sorted({t for m in chosen for t in m.tests}))
        code, seconds, last = run_tests(root, guarded)
        print(f"baseline (no mutation): {len(guarded)} test files, exit {code}, {seconds:.0f} s: {last}", flush=True)
        if code != 0:
            print("the unmutated copy fails its tests: fix that first (every mutation would look caught)")
            return 1
        bad = 0
        for m in chosen:
            path, where = locate(root, m)
            if path is None:
                bad += 1
                print(f"ERROR   {m.name:38} {where}", flush=True)
                continue
            original = path.read_text(encoding="utf-8")
            path.write_text(original.replace(m.old, m.new), encoding="utf-8")
            try:
                code, seconds, last = run_tests(root, m.tests)
            finally:
                path.write_text(original, encoding="utf-8")
            caught = code != 0
            bad += not caught
            print(f"{'caught' if caught else 'MISSED':7} {m.name:38} {where} ({seconds:.0f} s): {last}", flush=True)
        print(f"{len(chosen) - bad} of {len(chosen)} mutations caught" + (f"; {bad} missed or not planted" if bad else ""))
        return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
