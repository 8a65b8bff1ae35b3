"""The training loop: batches -> loss -> backward -> clip -> optimizer step, with evaluation, early stopping,
checkpoints, run artifacts and graceful signals.

One `Trainer` owns one run. `run()` returns the process exit code: 0 when the run ended normally
(finished, early-stopped or interrupted by a signal), 1 when the loss became NaN or infinite or a file
could not be written.

What a run survives: its output folders are checked before anything is built (microgpt.train.outputs);
it holds MODEL_DIR for itself (microgpt.train.run_lock) and clears the temporary files of killed runs
there; SIGINT, SIGTERM and SIGHUP (a closed terminal) stop it after the current step with a checkpoint;
a stdout that goes away (`| head`, a killed TUI) only silences the console (microgpt.console), the log
files still get every line; a write that fails mid-run (disk full) stops it cleanly, its manifest
marked "failed" with the reason.

A resumed run keeps what its checkpoint fixed and never takes paths from it (train/resume.py); `Trainer`
checks that itself, so a notebook's `Trainer(cfg, checkpoint=...)` gets the same one-line refusal as
`microgpt train --resume`. After construction `self.model.config` is the one truth for the model's shape.

It is long because a run's life is one story (start, step, evaluate, save, stop, report) whose parts share
the same state; the pieces that stand alone (batches, outputs, locks, resume, progress line, artifacts) are
modules of their own.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import shlex
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from microgpt import __version__
from microgpt.atomic import remove_stale_temps
from microgpt.autograd import no_grad
from microgpt.autograd.parallel import set_threads
from microgpt.chat.session import ChatSession
from microgpt.config import TrainConfig, format_config
from microgpt.console import output_may_fail, print_error, stop_signals
from microgpt.errors import ConfigError, counted, one_line, shown
from microgpt.nn import GPT, clip_grad_norm
from microgpt.storage import (
    Checkpoint,
    checkpoint_info,
    checkpoint_name,
    load_checkpoint,
    save_checkpoint,
    step_checkpoint_name,
)
from microgpt.train.artifacts import (
    SAFE_RUN_ID,
    RunArtifacts,
    make_run_id,
    release_run_id,
    repoint_checkpoint,
    rewind_run_logs,
)
from microgpt.train.batches import (
    document_starts,
    fit_block_size,
    random_starts,
    sequential_starts,
    validation_batches,
    windows_at,
)
from microgpt.train.data_pipeline import PreparedData, cache_dir, prepare_data
from microgpt.train.outputs import preflight
from microgpt.train.progress import ProgressLine, bar_text, clock, perplexity, shown_perplexity
from microgpt.train.resume import check_resumable, schedule_note, stored_paths_note, validation_note
from microgpt.train.run_lock import RunLock, claim_lock
from microgpt.train.system_monitor import SystemMonitor

MEMORISE_PASSES = 20  # a run that reads its training text more often than this learns it by heart (warned)
OPTIMIZER_STATE = ("m", "v", "t")  # what Adam (and Muon) carry across a resume; hyper-parameters are config
SAMPLE_PROMPTS = (
    "How do I make tea?",
    "What is a good way to start studying for an exam?",
    "Explain what a computer network is.",
    "Can you help me write a short thank-you note?",
)


@dataclass
class Progress:
    """The state of a run that a checkpoint must carry for an exact resume."""

    step: int = 0  # optimizer steps completed
    best_val_loss: float = math.inf  # the lowest validation loss measured: best_checkpoint's
    patience_mark: float = math.inf  # the last one that beat the mark before it by EARLY_STOP_MIN_DELTA
    patience_used: int = 0  # evaluations since then
    last_val_loss: float = math.nan
    val_step: int | None = None  # the step last_val_loss was measured at (None: not known, an older checkpoint)
    recent_losses: list[float] = field(default_factory=list)  # train losses since the last evaluation
    tokens_seen: int = 0
    eval_pending: bool = False  # a stop cut this step's evaluation short: a resume runs it first


def evaluate(model: GPT, batches: list[tuple[np.ndarray, np.ndarray]],
             stopped: Callable[[], bool] = lambda: False) -> float | None:
    """Mean cross-entropy per token over fixed batches, without recording a graph; None if `stopped()` turned
    true between batches (a run asked to stop does not wait for a long evaluation)."""
    total = count = 0.0
    with no_grad():
        for x, y in batches:
            if stopped():
                return None
            total += model.loss(x, y).item() * y.size
            count += y.size
    return total / count


def _with_dropout(model: GPT, dropout: float) -> GPT:
    """`model` with the resumed run's DROPOUT: the same weights in a model built with the new rate (dropout is
    a regulariser a resumed run may change; the checkpoint's own rate would otherwise silently stay)."""
    if model.config.dropout == dropout:
        return model
    rebuilt = GPT(replace(model.config, dropout=dropout), seed=0)
    rebuilt.load_state_dict(model.state_dict())
    return rebuilt


def command_line(argv: list[str], python: str | None = None) -> str:
    """The command that started this process, as one would type it again: `python -m microgpt train ...`
    (argv[0] is then the package's __main__.py, a full path; `python` is this interpreter's name), each word
    quoted where a POSIX shell needs it."""
    words = list(argv)
    if words and Path(words[0]).name == "__main__.py" and Path(words[0]).parent.name == "microgpt":
        words[:1] = [python or Path(sys.executable).name or "python", "-m", "microgpt"]
    elif words:
        words[0] = Path(words[0]).name
    return shlex.join(words)


class Trainer:
    """One training run, new or resumed."""

    def __init__(self, cfg: TrainConfig, resume: str | None = None, stop_after: int | None = None,
                 checkpoint: Checkpoint | None = None) -> None:
        """`resume` is a checkpoint path; `checkpoint`, when given, is its already-loaded content."""
        self.cfg = cfg
        self.stop_after = stop_after
        set_threads(cfg.threads)
        self.progress = Progress()
        self.stop_reason: str | None = None
        self._signals = 0
        if resume and checkpoint is None:
            checkpoint = load_checkpoint(resume)
        if checkpoint:
            check_resumable(cfg, checkpoint, str(resume or "checkpoint"))
            if stop_after is not None and stop_after <= checkpoint.meta["step"]:
                raise ConfigError(f"--stop-after {stop_after}: this run is already at step "
                                  f"{checkpoint.meta['step']}; give a later step")
        self.checkpoint_config = checkpoint.meta.get("train_config") if checkpoint else None
        preflight(cfg, checkpoint.model.config if checkpoint else cfg.model, cache_dir())
        self.run_id = (checkpoint.meta["run_id"] if checkpoint else
                       make_run_id(cfg.run_name, cfg.log_dir, reserve=True))
        try:
            self.lock = RunLock(cfg.model_dir, self.run_id).acquire()
            self.claims: list[RunLock] = []
            try:
                self._claim_outputs(cfg)
                self._setup(cfg, resume, checkpoint)
            except BaseException:
                self._release_locks()
                raise
        except BaseException:
            if not checkpoint:  # the id this run claimed goes back: it never started
                release_run_id(self.run_id, cfg.log_dir)
            raise

    def _claim_outputs(self, cfg: TrainConfig) -> None:
        """Outputs outside MODEL_DIR are claimed, file by file (claim_lock), and refused in another live run's
        MODEL_DIR; the best and latest this run writes in MODEL_DIR must not be claimed by another live run."""
        for knob, path in (("MODEL_OUT_PATH", cfg.model_out_path), ("MODEL_BEST_PATH", cfg.model_best_path)):
            if path and Path(path).parent.resolve() != Path(cfg.model_dir).resolve():
                RunLock(Path(path).parent, self.run_id, knob, path).check_free()
                self.claims.append(claim_lock(path, self.run_id, knob).acquire())
        for kind in ("latest",) if cfg.model_best_path else ("best", "latest"):
            claim_lock(Path(cfg.model_dir) / checkpoint_name(kind), self.run_id, "MODEL_DIR").check_free()

    def _release_locks(self) -> None:
        for lock in (*self.claims, self.lock):
            lock.release()

    def _setup(self, cfg: TrainConfig, resume: str | None, checkpoint: Checkpoint | None) -> None:
        """Everything after the output folder is ours: data, model, optimizer, progress."""
        chosen = [Path(p).parent for p in (cfg.model_out_path, cfg.model_best_path) if p]
        for folder in {Path(cfg.model_dir), Path(cfg.log_dir) / "runs", cache_dir(), *chosen}:
            remove_stale_temps(folder)
        self.data: PreparedData = prepare_data(cfg, checkpoint.tokenizer if checkpoint else None)
        if checkpoint:
            self.model = _with_dropout(checkpoint.model, cfg.model.dropout)
            meta = checkpoint.meta
            self.progress = Progress(step=meta["step"], best_val_loss=meta["best_val_loss"],
                                     patience_mark=meta.get("patience_mark", meta["best_val_loss"]),
                                     patience_used=meta["patience_used"], last_val_loss=meta["val_loss"],
                                     val_step=meta.get("val_step"),
                                     recent_losses=meta["recent_losses"], tokens_seen=meta["tokens_seen"],
                                     eval_pending=meta.get("eval_pending") is True)
            self.rng = np.random.default_rng()
            self.rng.bit_generator.state = meta["rng_state"]
            self.resumed_from = str(resume or "checkpoint")
            stored = meta.get("dataset_sha256")
            self.dataset_changed = bool(stored) and stored != self.data.dataset_sha256
        else:
            self.model = GPT(replace(cfg.model, vocab_size=self.data.tokenizer.vocab_size), seed=cfg.seed)
            self.rng = np.random.default_rng(cfg.seed + 1)
            self.resumed_from = None
            self.dataset_changed = False
        self.optimizer = cfg.optim.build(self.model.parameters(), self.model.hidden_matrices(), lr=self._lr())
        if checkpoint:  # the moments and step count; the hyper-parameters are the (resumed) config's
            self.optimizer.load_state_dict({k: checkpoint.optimizer_state[k] for k in OPTIMIZER_STATE})
        block_size = self.model.config.block_size
        self.block = fit_block_size(len(self.data.train_stream), block_size)
        self.doc_starts = document_starts(self.data.train_stream, self.data.tokenizer.bos_id, self.block)
        self.val_batches = validation_batches(self.data.val_stream, fit_block_size(len(self.data.val_stream),
                                              block_size), cfg.batch_size, cfg.eval_steps)
        self.model_dir = Path(cfg.model_dir)
        self.model_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoints: dict[str, Any] = {}  # kind -> path, and kind_step -> its step
        self.best_note: str | None = None
        self.rewound: tuple[int, int | None] = (0, None)  # log lines cut on resume, or a later saved step
        if checkpoint:  # the best checkpoint an earlier session of this run saved is still its best, if there
            best = Path(cfg.model_best_path) if cfg.model_best_path else self.model_dir / checkpoint_name("best")
            info = checkpoint_info(best) if best.is_file() else {}
            if info.get("run") == self.run_id and isinstance(info.get("step"), int):
                self.checkpoints.update(best=str(best), best_step=info["step"])
                held = info.get("val_loss")  # resumed from an older checkpoint: the file may hold a lower loss
                if type(held) is float and math.isfinite(held) and held < self.progress.best_val_loss:
                    self.progress.best_val_loss = held  # the resumed run replaces it only with a lower one
                    self.best_note = (f"{best} holds step {info['step']} of this run (val loss {held:.4f}), lower "
                                      "than this checkpoint's best: it is replaced only by a lower loss")
        self.session_started = time.time()
        # the run's clock: earlier sessions' training time counts, so elapsed times and tokens/s span the run
        self.started = self.session_started - (checkpoint.meta.get("elapsed_s", 0.0) if checkpoint else 0.0)

    # ----- signals -------------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: Any) -> None:
        """First SIGINT/SIGTERM/SIGHUP: finish this step, save, stop. A second signal: leave at once (every
        file write is atomic, so nothing is left half-written)."""
        self._signals += 1
        if self._signals > 1:
            os._exit(130 if signum == signal.SIGINT else 143)
        if self.stop_reason is None:  # a run already ending (completed, early stop) is saved as what it is
            self.stop_reason = "interrupted"

    # ----- the loop ------------------------------------------------------------------------------
    def run(self) -> int:
        """Train until done or stopped; the exit code (see the module docstring). Console output may fail."""
        stops = [signal.SIGINT, *stop_signals()]  # under nohup a closed terminal's SIGHUP stays ignored
        previous = {s: signal.signal(s, self._on_signal) for s in stops}
        self.art: RunArtifacts | None = None
        try:
            with output_may_fail(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                print(f"run_id: {self.run_id}", flush=True)
                self.console = ProgressLine()
                if self.resumed_from:  # before the files are opened for this session's lines
                    self.rewound = rewind_run_logs(self.cfg.log_dir, self.run_id, self.progress.step)
                self.art = RunArtifacts(self.run_id, self.cfg.log_dir, echo=True, log_level=self.cfg.log_level,
                                        console=self.console, started=self.started)
                return self._loop()
        except OSError as exc:  # a full disk, a folder removed or made read-only mid-run
            return self._write_failed(exc)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            if self.art is not None:
                with contextlib.suppress(OSError):
                    self.console.clear()
                with contextlib.suppress(OSError):
                    self.art.close()
            self._release_locks()

    def _write_failed(self, exc: OSError) -> int:
        """Stop cleanly after a failed write: one line on stderr, the manifest marked failed (if it can be)."""
        where = f" {exc.filename}" if exc.filename else ""
        reason = f"cannot write{where}: {exc.strerror or exc}"
        self.stop_reason = "write_failed"
        written = [kind for kind in ("latest", "best") if kind in self.checkpoints]  # latest first: the newer on a tie
        newest = max(written, key=lambda kind: self.checkpoints[f"{kind}_step"], default=None)
        kept = (f"{self.checkpoints[newest]} from step {self.checkpoints[f'{newest}_step']} is complete: fix that, "
                "then `--resume` it" if newest else "no checkpoint was written: fix that, then start it again")
        print_error(f"microgpt train: error: {reason}; the run stopped at step {self.progress.step}; {kept}")
        if self.art is not None:
            with contextlib.suppress(OSError):
                self.art.log(f"stopped: {reason}", "error")
            with contextlib.suppress(OSError):
                self._write_manifest(status="failed", error=reason)
            with contextlib.suppress(OSError):
                self.art.event("stop", step=self.progress.step, reason=self.stop_reason, error=reason)
        return 1

    def _loop(self) -> int:
        cfg, p = self.cfg, self.progress
        monitor = SystemMonitor()
        self._announce()
        interval_steps, step_time, last_system = 0, 0.0, -math.inf  # the first step is sampled
        session_start, session_steps = time.perf_counter(), 0
        if p.eval_pending:  # the evaluation a stop interrupted, as the uninterrupted run made it
            self._evaluate_and_checkpoint()
        while p.step < cfg.num_steps and self.stop_reason is None:
            t0 = time.perf_counter()
            loss = self._train_step()
            step_time += time.perf_counter() - t0
            interval_steps += 1
            session_steps += 1
            self._show_progress(loss, session_steps, time.perf_counter() - session_start)
            if not math.isfinite(loss):
                self._diverged(f"loss became {loss} at step {p.step}")
                break
            if p.step % cfg.metric_interval == 0 or p.step == cfg.num_steps:
                self._report_progress(loss, interval_steps, step_time, session_steps,
                                      time.perf_counter() - session_start)
                interval_steps, step_time = 0, 0.0
            if time.perf_counter() - last_system >= 2.0:
                last_system = time.perf_counter()
                self._report_system(monitor)
            if p.step % cfg.eval_interval == 0 or p.step == cfg.num_steps:
                self._evaluate_and_checkpoint()
            if self.stop_after is not None and p.step >= self.stop_after and self.stop_reason is None:
                self.stop_reason = "stopped_after"
        if self.stop_reason is None:
            self.stop_reason = "completed"
        exit_code = 1 if self.stop_reason == "nan_loss" else 0
        if self.stop_reason in ("interrupted", "stopped_after") and self.checkpoints.get("latest_step") != p.step:
            self._save("latest")
        if exit_code == 0:
            self._finish()
        self._write_manifest(status="finished" if exit_code == 0 else "failed")
        self.art.event("stop", step=p.step, reason=self.stop_reason, best_val_loss=p.best_val_loss)
        best = (f"best val loss {p.best_val_loss:.4f}" if math.isfinite(p.best_val_loss) else
                "no validation loss yet" if math.isnan(p.last_val_loss) and p.val_step is None else
                "no finite validation loss")
        self.art.log(f"stopped: {self.stop_reason} at step {p.step}/{cfg.num_steps}; {best}; elapsed "
                     f"{clock(time.time() - self.started)}")
        return exit_code

    def _diverged(self, what: str) -> None:
        """A loss is NaN or infinite: the weights are ruined, so stop without saving them (exit code 1)."""
        kept = f"the best checkpoint {self.checkpoints['best']} is kept" if "best" in self.checkpoints else \
            "this run has no best checkpoint here"
        clip = self.cfg.optim.grad_clip
        hint = "a lower LEARNING_RATE" + (" or GRAD_CLIP=1" if not 0 < clip <= 1 else "")
        self.art.log(f"{what}: stopping; {kept} (try {hint})", "error")
        self.stop_reason = "nan_loss"

    def _lr(self) -> float:
        """The learning rate of the next step, from the schedule."""
        return self.cfg.optim.lr_at(self.progress.step, self.cfg.num_steps)

    def _train_step(self) -> float:
        cfg, p = self.cfg, self.progress
        lr = self.optimizer.lr = self._lr()
        if cfg.train_doc_sampling == "sequential":
            starts = sequential_starts(self.doc_starts, p.step, cfg.batch_size)
        else:
            starts = random_starts(self.rng, len(self.data.train_stream), self.block, cfg.batch_size)
        x, y = windows_at(self.data.train_stream, starts, self.block)
        self.optimizer.zero_grad()
        self.model.seed_dropout((cfg.seed, p.step))  # the masks depend on the step only: resume stays exact
        loss = self.model.loss(x, y)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            clip_grad_norm(self.optimizer.params, cfg.optim.grad_clip)
        self.optimizer.step()
        p.step += 1
        p.tokens_seen += y.size
        value = loss.item()
        p.recent_losses.append(value)
        if cfg.log_level == "debug":
            self.art.log(f"step {p.step} batch starts {starts.tolist()} lr {lr:.6f} loss {value:.4f}", "debug")
        return value

    # ----- reporting -----------------------------------------------------------------------------
    def _announce(self) -> None:
        cfg, data = self.cfg, self.data
        n_params = self.model.num_parameters()
        self.art.log(f"microgpt {__version__} run {self.run_id}" + (f" (resumed from {self.resumed_from} at step "
                     f"{self.progress.step})" if self.resumed_from else ""))
        for note in ([stored_paths_note(self.checkpoint_config, cfg),
                      schedule_note(self.checkpoint_config, cfg, self.progress.step), self.best_note]
                     if self.resumed_from else []):
            if note:
                self.art.log(note)
        dropped, later = self.rewound
        if dropped:
            self.art.log(f"the run's events and tables held {counted(dropped, 'line')} past step {self.progress.step}, "
                         "from a session stopped before it saved them: removed (this run logs those steps again)")
        if later is not None:
            self.art.log(f"this run's logs go on to step {later:,} (a checkpoint another session of it saved): this "
                         f"session's lines follow them, its steps from {self.progress.step + 1:,} a second time",
                         "warning")
        changed = validation_note(self.checkpoint_config, cfg) if self.resumed_from else None
        if changed:
            self.art.log(changed, "warning")
        if self.dataset_changed:
            before = (self.checkpoint_config or {}).get("dataset_path")
            if isinstance(before, str) and before != cfg.dataset_path:
                self.art.log(f"the checkpoint was trained on {before}; this run continues on {cfg.dataset_path}, "
                             "other data (its sha256 differs), so its validation loss is measured on other text "
                             "than the best so far", "warning")
            else:
                self.art.log(f"{cfg.dataset_path} changed since the checkpoint was saved (its sha256 differs): the "
                             "run continues on the new data, so it will not match an uninterrupted run", "warning")
        paths = self.art.paths()
        self.art.log(f"[system] pid {os.getpid()} run {self.run_id} cwd {Path.cwd()}")
        self.art.log(f"[system] dataset {Path(cfg.dataset_path).resolve()} models {self.model_dir.resolve()}")
        self.art.log(f"[system] log {Path(paths['train_log']).resolve()} events {Path(paths['events']).resolve()} "
                     f"manifest {Path(paths['manifest']).resolve()}")
        self.art.log("resolved config:\n" + format_config(cfg))
        kinds = ", ".join(f"{kind} {count:,}" for kind, count in data.counts.items())
        self.art.log(f"dataset {cfg.dataset_path}: {counted(sum(data.counts.values()), 'record')} ({kinds}); "
                     f"{data.n_train_docs:,} train / {data.n_val_docs:,} val documents; {data.train_stream.size:,} / "
                     f"{data.val_stream.size:,} tokens")
        ids = data.tokenizer.vocab_size
        fewer = f" (all the training text has; TOKEN_VOCAB_SIZE allows {cfg.model.vocab_size:,})" \
            if ids < cfg.model.vocab_size else ""
        self.art.log(f"tokenizer {cfg.tokenizer}: {ids:,} ids{fewer}; model {n_params:,} parameters; "
                     f"{len(self.val_batches)} validation batches of {cfg.batch_size}x{self.val_batches[0][0].shape[1]}")
        passes = (cfg.num_steps - self.progress.step) * cfg.batch_size * self.block / max(data.train_stream.size, 1)
        if passes > MEMORISE_PASSES:
            self.art.log(f"the training text is {data.train_stream.size:,} tokens and this run reads it {passes:,.0f} "
                         "times over: the model will learn it by heart rather than learn to generalise (the "
                         "validation loss rises while the training loss falls); more data, or fewer steps, help",
                         "warning")
        if self.block < self.model.config.block_size:
            self.art.log(f"the training text is only {len(data.train_stream)} tokens long: windows of {self.block} "
                         f"tokens instead of BLOCK_SIZE={self.model.config.block_size}", "warning")
        if cfg.train_device == "gpu":
            self.art.log("TRAIN_DEVICE=gpu: microgpt computes with NumPy, so this run uses the CPU "
                         "(see `python -m microgpt gpu-check`)", "warning")
        self.art.event("start", run=self.run_id, config=cfg.to_dict(), total_steps=cfg.num_steps,
                       parameters=n_params, dataset=data.summary(), step=self.progress.step,
                       tokenizer={"kind": cfg.tokenizer, "vocab_size": data.tokenizer.vocab_size},
                       resumed_from=self.resumed_from)
        self._write_manifest(status="running")

    def _report_progress(self, loss: float, steps: int, step_time: float, session_steps: int,
                         session_seconds: float) -> None:
        """The progress line: tokens/s of the training steps alone; the ETA from the session's wall clock per
        step, so the time evaluations and samples take is counted in it."""
        cfg, p = self.cfg, self.progress
        tokens_per_sec = steps * cfg.batch_size * self.block / max(step_time, 1e-9)
        steps_per_sec = steps / max(step_time, 1e-9)
        elapsed = time.time() - self.started
        eta = (cfg.num_steps - p.step) * session_seconds / max(session_steps, 1)
        lr = self.optimizer.lr
        self.art.log(f"step {p.step}/{cfg.num_steps} | loss {loss:.4f} | lr {lr:.6f} | {tokens_per_sec:,.0f} tok/s "
                     f"| elapsed {clock(elapsed)} | eta {clock(eta)}")
        self.art.event("step", step=p.step, loss=loss, lr=lr, tokens_per_sec=tokens_per_sec,
                       steps_per_sec=steps_per_sec, elapsed_s=elapsed, eta_s=eta, total_steps=cfg.num_steps)

    def _show_progress(self, loss: float, steps: int, seconds: float) -> None:
        """The live status line on a terminal (step/total, loss, tokens/s, ETA); nothing when not a TTY."""
        cfg, p = self.cfg, self.progress
        per_step = seconds / max(steps, 1)
        self.console.show(bar_text(p.step, cfg.num_steps, loss, cfg.batch_size * self.block / max(per_step, 1e-9),
                                   (cfg.num_steps - p.step) * per_step), force=p.step == cfg.num_steps)

    def _report_system(self, monitor: SystemMonitor) -> None:
        sample = monitor.sample()
        self.art.system_row({"step": self.progress.step, **sample})
        self.art.event("system", step=self.progress.step, **sample)
        if self.cfg.verbose:
            self.art.log(f"system cpu {sample['cpu_percent']:.0f}% | ram {sample['ram_used_mb']:.0f} MB | "
                         f"rss {sample['rss_mb']:.0f} MB | threads {sample['threads']}")

    # ----- evaluation, checkpoints, samples --------------------------------------------------------
    def _evaluate_and_checkpoint(self) -> None:
        cfg, p = self.cfg, self.progress
        val = evaluate(self.model, self.val_batches, stopped=lambda: self.stop_reason is not None)
        p.eval_pending = val is None
        if val is None:  # stopped mid-evaluation: the loop ends and saves the latest checkpoint, which says so
            return
        train = float(np.mean(p.recent_losses)) if p.recent_losses else math.nan
        p.recent_losses = []
        p.last_val_loss, p.val_step = val, p.step
        improved = val < p.best_val_loss  # any new low is the best checkpoint; early stopping asks for more:
        if improved:
            p.best_val_loss = val
        if p.patience_mark - val > cfg.early_stop_min_delta:  # a drop of more than EARLY_STOP_MIN_DELTA
            p.patience_mark, p.patience_used = val, 0
        else:
            p.patience_used += 1
        ppl = perplexity(val)
        elapsed = time.time() - self.started
        self.art.log(f"eval step {p.step} | train {train:.4f} | val {val:.4f} | ppl {shown_perplexity(ppl)} | best "
                     f"{p.best_val_loss:.4f}{' (improved)' if improved else ''} | patience "
                     f"{p.patience_used}/{cfg.early_stop_patience}")
        self.art.eval_row({"step": p.step, "train_loss": train, "val_loss": val, "val_ppl": ppl, "gap": val - train,
                           "best_val_loss": p.best_val_loss, "lr": self.optimizer.lr,
                           "tokens_per_sec": p.tokens_seen / max(elapsed, 1e-9), "elapsed_s": round(elapsed, 1),
                           "patience_used": p.patience_used})
        self.art.event("eval", step=p.step, train_loss=train, val_loss=val, val_ppl=ppl, gap=val - train,
                       best_val_loss=p.best_val_loss, patience_used=p.patience_used, patience=cfg.early_stop_patience,
                       improved=improved)
        if not math.isfinite(val):  # NaN weights: saving them would spoil latest, sampling them would crash
            self._diverged(f"validation loss became {val} at step {p.step}")
            return
        if improved:
            self._save("best")
        self._save("latest")
        self._samples()
        self._write_manifest(status="running")
        if p.patience_used >= cfg.early_stop_patience:
            self.stop_reason = "early_stop"

    def _meta(self) -> dict[str, Any]:
        p = self.progress
        return {"run_id": self.run_id, "step": p.step, "train_config": self.cfg.to_dict(),
                "val_loss": p.last_val_loss, "val_step": p.val_step, "best_val_loss": p.best_val_loss,
                "patience_mark": p.patience_mark, "patience_used": p.patience_used,
                "recent_losses": p.recent_losses, "tokens_seen": p.tokens_seen, "eval_pending": p.eval_pending,
                "rng_state": self.rng.bit_generator.state, "dataset_sha256": self.data.dataset_sha256,
                "elapsed_s": round(max(0.0, time.time() - self.started), 3),  # a clock set back: not below 0
                "saved_at": datetime.now().isoformat(timespec="seconds")}

    def _save(self, kind: str, path: Path | None = None) -> Path:
        if path is None and kind == "best" and self.cfg.model_best_path:
            path = Path(self.cfg.model_best_path)
        path = path or self.model_dir / checkpoint_name(kind)
        if kind in ("best", "latest") and kind not in self.checkpoints:
            self._keep_earlier(path)
        save_checkpoint(path, self.model, self.data.tokenizer, self._meta(), self.optimizer)
        self.checkpoints[kind] = str(path)
        self.checkpoints[f"{kind}_step"] = self.progress.step
        self.art.event("checkpoint", step=self.progress.step, path=str(path), kind=kind)
        return path

    def _keep_earlier(self, path: Path) -> None:
        """Before a run first writes best or latest over another run's, move that file to the name its run's
        final checkpoint has (ckpt_<run>_step<N>..., from its own meta): a run stopped by kill -9 or a second
        signal wrote no final checkpoint, and its best model is one no other file holds. Nothing moves when
        a file of that name exists already (a finished run's final checkpoint at the same step)."""
        if not path.is_file():
            return
        info = checkpoint_info(path)
        run, step, val = info["run"], info["step"], info["val_loss"]
        if run == self.run_id:
            return
        loss = float(val) if type(val) in (int, float) and abs(val) < 1e6 else math.nan  # from a file: a short name
        name = (step_checkpoint_name(run, step, loss) if isinstance(run, str) and SAFE_RUN_ID.fullmatch(run)
                and type(step) is int and 0 <= step < 2**62 else "")
        kept = path.with_name(name if 0 < len(name.encode()) <= 200 else f"{path.stem}.before_{self.run_id}.npz")
        if not kept.exists():  # else it is there already: the run's final checkpoint, the same step's model
            os.replace(path, kept)
            self.art.log(f"kept {path.name} of the earlier run {shown(run)} as {kept}")
        with contextlib.suppress(OSError):  # its manifest names the file's home (a convenience: never fatal)
            repoint_checkpoint(self.cfg.log_dir, run, path, kept)

    def _finish(self) -> None:
        """The final checkpoint, named by run, step and val loss (or MODEL_OUT_PATH), plus latest."""
        p = self.progress
        if self.checkpoints.get("latest_step") != p.step:
            self._save("latest")
        measured = p.val_step is None or p.val_step == p.step  # a stop between evaluations: no loss in the name
        name = step_checkpoint_name(self.run_id, p.step, p.last_val_loss if measured else math.nan)
        self._save("final", Path(self.cfg.model_out_path) if self.cfg.model_out_path else self.model_dir / name)
        self.art.log("checkpoints: " + ", ".join(f"{self.checkpoints[kind]} ({kind})" for kind in ("final", "best", "latest")
                                                 if kind in self.checkpoints))

    def _samples(self) -> None:
        """Answer a few fixed questions the way `chat` would, so the log shows what the model can say."""
        cfg = self.cfg
        for i in range(cfg.sample_count):
            if self.stop_reason is not None:  # asked to stop: samples are only for the log
                return
            settings = replace(cfg.sampling, seed=cfg.seed + self.progress.step + i)
            question = SAMPLE_PROMPTS[i % len(SAMPLE_PROMPTS)]
            text = ChatSession(self.model, self.data.tokenizer).reply(question, settings)
            self.art.log(f"sample {i + 1}: {question} -> {one_line(text)}")  # no NUL or \b bytes in the log
            self.art.event("sample", step=self.progress.step, prompt=question, text=text)

    def _write_manifest(self, status: str, error: str | None = None) -> None:
        p, cfg = self.progress, self.cfg
        self.art.write_manifest({
            "run": self.run_id, "status": status, "stop_reason": self.stop_reason, "pid": os.getpid(),
            "dataset": {"path": cfg.dataset_path, **self.data.summary()},
            "config": cfg.to_dict(), "parameters": self.model.num_parameters(),
            "tokenizer": {"kind": cfg.tokenizer, "vocab_size": self.data.tokenizer.vocab_size},
            "versions": {"microgpt": __version__, "numpy": np.__version__, "python": platform.python_version()},
            "start_time": datetime.fromtimestamp(self.session_started).isoformat(timespec="seconds"),  # this session's
            "end_time": datetime.now().isoformat(timespec="seconds") if status != "running" else None,
            "duration_s": round(time.time() - self.started, 1),  # the run's training time, every session's
            "steps": p.step, "total_steps": cfg.num_steps,
            "best_val_loss": p.best_val_loss,  # null until measured: the manifest is strict JSON
            "final": {"step": p.step, "val_loss": p.last_val_loss if p.val_step in (None, p.step) else None,
                      "tokens_seen": p.tokens_seen},  # a loss only if measured on the final weights
            "checkpoints": {k: v for k, v in self.checkpoints.items() if not k.endswith("_step")},
            "resumed_from": self.resumed_from, "command": command_line(sys.argv),
            **({"error": error} if error else {}),
        })
