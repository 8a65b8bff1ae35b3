"""Adam, Muon, gradient clipping, learning-rate schedules, and OptimSettings: the trainer's optimizer knobs."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from microgpt.autograd import Tensor
from microgpt.autograd.parallel import MAC_WORK, PASS_WORK, run_split
from microgpt.nn.module import Parameter

OPTIMIZERS = ("adam", "muon")  # OptimSettings.build makes one of these
SCHEDULES = ("linear", "cosine", "wsd", "constant")  # learning_rate's shapes
MIN_EPS = 1e-30  # the smallest EPS_ADAM: eps / root_v_hat must stay above 0 in float32 (0/0 on a zero gradient)
FLUSH_EVERY = 16  # steps between two flushes of subnormal moments (Adam._flush_subnormal)


@dataclass
class OptimSettings:
    """How the weights move: Adam's hyper-parameters, the learning-rate schedule and gradient clipping.

    These defaults are the trainer's (LEARNING_RATE, BETA1, ... in microgpt.config) and Adam's: their one home.
    """

    optimizer: str = "muon"  # muon for the blocks' matrices (Adam for the rest), or adam for all (measured: README)
    lr: float = 0.004  # the peak learning rate (measured, README); the schedule sets each step's
    lr_schedule: str = "wsd"  # linear, cosine, wsd or constant (wsd: measured, README)
    warmup_steps: int = 0
    decay_fraction: float = 0.5  # wsd only: the share of the steps (after warm-up) that decays to zero
    beta1: float = 0.85
    beta2: float = 0.99
    eps: float = 1e-8
    weight_decay: float = 0.1  # the trainer's AdamW-style decay (measured, README); a bare Adam() has none
    grad_clip: float = 1.0  # largest global gradient norm (0: off)

    def lr_at(self, step: int, num_steps: int) -> float:
        """The learning rate of 0-based `step` of a `num_steps` run."""
        return learning_rate(self.lr_schedule, step, num_steps, self.lr, self.warmup_steps, self.decay_fraction)

    def build(self, params: Iterable[Parameter], matrices: Iterable[Parameter], lr: float) -> Adam:
        """The optimizer these settings name, over `params`, starting at learning rate `lr`: Adam for all of
        them, or Muon for the hidden `matrices` among them and Adam for the rest."""
        hyper = {"lr": lr, "betas": (self.beta1, self.beta2), "eps": self.eps, "weight_decay": self.weight_decay}
        if self.optimizer == "adam":
            return Adam(params, **hyper)
        if self.optimizer == "muon":
            chosen = {id(p) for p in matrices}
            params = list(params)
            return Muon([p for p in params if id(p) not in chosen], [p for p in params if id(p) in chosen], **hyper)
        raise ValueError(f"unknown optimizer {self.optimizer!r} (one of {', '.join(OPTIMIZERS)})")


class Adam:
    """Adam with bias correction and decoupled (AdamW-style) weight decay.

    All parameters are moved into one flat buffer (each Parameter's .data becomes a view of it), and their
    gradients into another, so one step is a handful of in-place NumPy passes over one array.
      m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
      p -= lr * wd * p;  p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    """

    def __init__(self, params: Iterable[Parameter], lr: float = OptimSettings.lr,
                 betas: tuple[float, float] = (OptimSettings.beta1, OptimSettings.beta2),
                 eps: float = OptimSettings.eps, weight_decay: float = 0.0) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("Adam got no parameters")
        for p in self.params:
            if not isinstance(p, Tensor):
                raise TypeError(f"Adam moves Parameters (Tensors), not {type(p).__name__}: pass model.parameters()")
        dtypes = sorted({str(p.dtype) for p in self.params})
        if len(dtypes) > 1:
            raise ValueError(f"Adam keeps every parameter in one buffer of one dtype, got {' and '.join(dtypes)}")
        self.lr, self.betas, self.eps, self.weight_decay = _checked_hyper(lr, betas, eps, weight_decay)
        self.flat = np.concatenate([p.data.reshape(-1) for p in self.params])
        self.flat_grad = np.zeros_like(self.flat)
        self.m = np.zeros_like(self.flat)
        self.v = np.zeros_like(self.flat)
        self.t = 0  # step() calls so far
        self.steps = np.zeros(len(self.params), dtype=np.int64)  # each parameter's own count: steps it was moved
        self._data_views, self._bounds = [], []
        offset = 0
        for p in self.params:
            n = p.size
            p.data = self.flat[offset:offset + n].reshape(p.shape)
            self._data_views.append(p.data)
            self._bounds.append((offset, offset + n))
            offset += n
        self._starts = np.array([lo for lo, _ in self._bounds], dtype=np.int64)  # each parameter's first entry
        self._give_grad_homes()
        self._reached = [True] * len(self.params)
        self._tmp = np.empty_like(self.flat)
        self.n_adam = self.flat.size  # Adam updates flat[:n_adam]; a subclass may own the rest

    def _give_grad_homes(self) -> None:
        """Point every parameter's `grad_home` at its view of `flat_grad`, where backward writes its gradient."""
        self._grad_views = [self.flat_grad[lo:hi].reshape(p.shape) for p, (lo, hi) in zip(self.params, self._bounds)]
        for p, view in zip(self.params, self._grad_views):
            p.grad_home = view

    def zero_grad(self) -> None:
        """Forget every gradient. The next backward writes each one straight into its view of the flat
        gradient (its `grad_home`), later ones add to it: no pass over the buffer to zero it first."""
        for p in self.params:
            p.grad = None

    def _gather_grads(self) -> None:
        """Make sure the flat buffer holds every gradient: a copy of a .grad that was replaced by another array,
        and which parameters backward reached (a .grad that is None: it is not moved). A parameter whose .data was
        replaced (p.data = ...) has the new values copied into its place in the buffer, which it views again."""
        for i, (p, home, view) in enumerate(zip(self.params, self._data_views, self._grad_views)):  # every step
            if p.data is not home:
                if np.shape(p.data) != home.shape:
                    raise ValueError(f"a parameter's data was replaced by one of shape {np.shape(p.data)}, "
                                     f"not its {home.shape}: an optimizer's parameters keep their shapes")
                home[...] = p.data
                p.data = home
            self._reached[i] = p.grad is not None
            if p.grad is not None and p.grad is not view:
                view[...] = p.grad
                p.grad = view

    def step(self) -> None:
        """Move every parameter that has a gradient; one whose .grad is None (backward did not reach it, or it
        is frozen) keeps its value and moments, as in PyTorch. Then the gradients get a fresh buffer: a .grad
        kept from this step is not written over by the next backward."""
        self._gather_grads()
        self.t += 1
        self.steps[self._reached] += 1
        self._move()
        if self.t % FLUSH_EVERY == 0:
            run_split(self._flush_subnormal, self.flat.size, 6 * self.flat.size * PASS_WORK)
        self.flat_grad = np.empty_like(self.flat_grad)
        self._give_grad_homes()

    def _move(self) -> None:
        """Adam's update of flat[:n_adam]: in one split when every parameter there has taken as many steps as
        step() was called (training), else parameter by parameter, each with its own count's bias correction."""
        adam = np.flatnonzero(self._starts < self.n_adam)
        if (self.steps[adam] == self.t).all():
            run_split(lambda lo, hi: self._adam(lo, hi, self.t), self.n_adam,
                      16 * self.n_adam * PASS_WORK, calls=12 + bool(self.weight_decay))  # 16 passes
            return
        for i in adam:
            if self._reached[i]:
                self._adam(*self._bounds[i], int(self.steps[i]))

    def _adam(self, lo: int, hi: int, t: int) -> None:
        """Adam's update of flat[lo:hi], at step t of these parameters (each part of the buffer is independent)."""
        b1, b2 = self.betas
        root_v_hat = 1.0 / math.sqrt(1.0 - b2**t)  # sqrt(v_hat) = sqrt(v) * root_v_hat
        step_size = self.lr / (1.0 - b1**t)
        g, m, v, tmp, p = (a[lo:hi] for a in (self.flat_grad, self.m, self.v, self._tmp, self.flat))
        m *= b1
        np.multiply(g, 1.0 - b1, out=tmp)
        m += tmp
        v *= b2
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - b2
        v += tmp
        if self.weight_decay:
            p *= 1.0 - self.lr * self.weight_decay
        # step_size m / (sqrt(v) root_v_hat + eps), with root_v_hat taken out of the denominator: one pass fewer
        np.sqrt(v, out=tmp)
        tmp += self.eps / root_v_hat
        np.divide(m, tmp, out=tmp)
        tmp *= step_size / root_v_hat
        p -= tmp

    def _flush_subnormal(self, lo: int, hi: int) -> None:
        """Set the moments too small for a normal float to exactly 0.

        The first moment of an embedding row whose token has not come up for a few hundred steps decays
        below the smallest normal float32 (b1^t shrinks it every step), and x86 CPUs do arithmetic on such
        subnormal numbers about 40x slower: a long run's Adam step slowed down several times over. Such a
        moment moves its weight by far less than the weight's last bit, so zero changes nothing; an entry at
        zero stays zero (and fast) until its gradient returns. The second moment goes to zero only where the
        first is zero: there the step is 0 whatever v holds, while beside a normal m (gradients near 1e-19)
        a subnormal v still sets the step's size.
        """
        tiny = np.finfo(self.m.dtype).tiny
        m, v, tmp = self.m[lo:hi], self.v[lo:hi], self._tmp[lo:hi]
        np.abs(m, out=tmp)
        m[tmp < tiny] = 0
        v[(v < tiny) & (m == 0)] = 0  # v >= 0: a sum of squares

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to resume exactly: moments, step count and hyper-parameters."""
        state = {"m": self.m.copy(), "v": self.v.copy(), "t": np.asarray(self.t),
                 "lr": np.asarray(self.lr), "betas": np.asarray(self.betas), "eps": np.asarray(self.eps),
                 "weight_decay": np.asarray(self.weight_decay)}
        if (self.steps != self.t).any():  # some parameter skipped a step: each one's own count (training: never)
            state["steps"] = self.steps.copy()
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore exactly what `state` holds: moments and step counts, and the hyper-parameters it carries
        (a caller that keeps its own hyper-parameters passes only m, v and t; without `steps`, every parameter
        has taken t steps)."""
        missing = [key for key in ("m", "v", "t") if key not in state]
        if missing:
            raise ValueError(f"optimizer state lacks {', '.join(missing)}")
        for key in ("m", "v"):
            if np.shape(state[key]) != self.m.shape:
                raise ValueError(f"optimizer state {key} has shape {np.shape(state[key])}, the parameters "
                                 f"{self.m.shape}")
        t = np.asarray(state["t"])
        if t.shape != () or t.dtype.kind not in "iu" or int(t) < 0:
            raise ValueError(f"optimizer state t must be a step count (an integer >= 0), not {t!r}")
        steps = np.asarray(state.get("steps", np.full(len(self.params), int(t))))  # absent: all took t steps
        if steps.shape != self.steps.shape or steps.dtype.kind not in "iu" or (steps < 0).any() or (steps > t).any():
            raise ValueError(f"optimizer state steps must be {len(self.params)} step counts from 0 to t={int(t)}, "
                             f"one a parameter, not {np.array2string(steps, threshold=8)[:80]}")
        hyper = (state.get("lr", self.lr), tuple(state.get("betas", self.betas)), state.get("eps", self.eps),
                 state.get("weight_decay", self.weight_decay))
        self.lr, self.betas, self.eps, self.weight_decay = _checked_hyper(*hyper)
        self.m[...] = state["m"]
        self.v[...] = state["v"]
        self.t = int(t)
        self.steps[...] = steps


def _checked_hyper(lr: object, betas: object, eps: object,
                   weight_decay: object) -> tuple[float, tuple[float, float], float, float]:
    """Adam's hyper-parameters as floats; ValueError naming the first out of range (lr < 0 climbs the loss,
    beta >= 1 never forgets and divides by zero in the bias correction)."""
    try:
        lr, eps, weight_decay = float(lr), float(eps), float(weight_decay)  # type: ignore[arg-type]
        b1, b2 = (float(b) for b in betas)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"Adam's lr, eps and weight_decay are numbers and betas two numbers, not "
                         f"{lr!r}, {eps!r}, {weight_decay!r}, {betas!r}") from None
    for name, value, ok in (("lr", lr, lr >= 0), ("beta1", b1, 0 <= b1 < 1), ("beta2", b2, 0 <= b2 < 1),
                            ("eps", eps, eps >= 0), ("weight_decay", weight_decay, weight_decay >= 0)):
        if not (ok and math.isfinite(value)):
            raise ValueError(f"Adam's {name} is {value}: lr, eps and weight_decay must be finite and >= 0, "
                             "each beta in [0, 1)")
    return lr, (b1, b2), eps, weight_decay


def orthogonalise(g: np.ndarray, steps: int = 5) -> np.ndarray:
    """A stack of matrices (N, r, c), r <= c, pushed towards the nearest semi-orthogonal ones (every singular
    value near 1, the singular vectors kept) by `steps` Newton-Schulz iterations; a no-SVD way to compute
    U V^T of g = U S V^T.

    After scaling g so that its singular values s are at most 1, each step maps X -> p(X X^T) X, which maps
    every singular value s -> a s + b s^3 + c s^5 and leaves the vectors alone. These coefficients (Keller
    Jordan's Muon) make that polynomial climb steeply from 0 and then hover in about [0.7, 1.2]: five steps
    bring there every singular value down to about 1/300 of the norm; smaller ones stay smaller.

    Every X_k is P_k X_0 with P_k a polynomial in A = X_0 X_0^T, and such polynomials commute, so
    X_k X_k^T = P_k A P_k. A wide stack (c >= 2r) therefore iterates on the small (r, r) P alone,
    P -> p(P A P) P, and multiplies by X_0 once at the end: 4 r^3 per step instead of 2 r^2 c + r^3.
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g / (np.linalg.norm(g, axis=(1, 2), keepdims=True) + 1e-7)  # Frobenius norm >= largest singular value
    if x.shape[2] < 2 * x.shape[1]:
        for _ in range(steps):
            gram = x @ x.transpose(0, 2, 1)  # (N, r, r): small, because r <= c
            x = a * x + (b * gram + c * (gram @ gram)) @ x
        return x
    gram = x @ x.transpose(0, 2, 1)  # A, (N, r, r)
    p = np.broadcast_to(np.eye(x.shape[1], dtype=x.dtype), gram.shape).copy()  # P_0 = I
    for _ in range(steps):
        m = p @ gram @ p  # X_k X_k^T
        p = a * p + (b * m + c * (m @ m)) @ p
    return p @ x


class Muon(Adam):
    """Muon for the hidden weight matrices, Adam (the parent class) for everything else.

    A matrix's update is its Nesterov momentum with every singular value set to about 1 (`orthogonalise`):
    the step moves the weights by the same amount in every direction the gradient points to, however
    lopsided the raw gradient is, instead of letting a few large directions dominate. Scaled by
    0.2 sqrt(max(rows, cols)), its typical entry is about Adam's, so one learning rate serves both.
      m = mu m + g;  u = g + mu m;  W -= lr * wd * W;  W -= lr * 0.2 sqrt(max(r, c)) * orthogonalise(u)
    The matrices sit at the end of the flat buffers; their momentum lives in Adam's `m` there (`v` stays
    unused), so the state a checkpoint holds has Adam's layout.
    """

    MOMENTUM = 0.95

    def __init__(self, params: Iterable[Parameter], matrices: Iterable[Parameter], **adam: object) -> None:
        others, self.matrices = list(params), list(matrices)
        if any(p.ndim != 2 for p in self.matrices):
            raise ValueError("Muon's matrices must all be 2-D")
        super().__init__(others + self.matrices, **adam)  # type: ignore[arg-type]
        self.n_adam = sum(p.size for p in others)
        self._groups: dict[tuple[int, int], list[tuple[int, Parameter]]] = {}  # by (short side, long side)
        offset = self.n_adam
        for p in self.matrices:
            self._groups.setdefault((min(p.shape), max(p.shape)), []).append((offset, p))
            offset += p.size

    @staticmethod
    def _wide(values: np.ndarray, p: Parameter) -> np.ndarray:
        """`values` shaped like p, seen the wide way round (rows <= columns): transposed if p is tall."""
        values = values.reshape(p.shape)
        return values if p.shape[0] <= p.shape[1] else values.T

    def _move(self) -> None:
        """Adam's update for the others, then one orthogonalised step per stack of same-size matrices that
        backward reached; a stack is split over the cores (BLAS itself runs on one thread, see autograd.parallel)."""
        super()._move()
        reached = {id(p) for p, hit in zip(self.params, self._reached) if hit}
        for (rows, cols), group in self._groups.items():
            moved = [(offset, p) for offset, p in group if id(p) in reached]
            if not moved:
                continue

            def update(lo: int, hi: int, part: list[tuple[int, Parameter]] = moved, cols: int = cols) -> None:
                self._update(part[lo:hi], cols)

            run_split(update, len(moved), 15 * len(moved) * rows * rows * cols * MAC_WORK)  # ~5 x 3 r^2 c each

    def _update(self, part: list[tuple[int, Parameter]], cols: int) -> None:
        """The Muon step of some same-size matrices, seen the wide way round: (N, r, c) stacks, r <= c."""
        mu = self.MOMENTUM
        g = np.stack([self._wide(self.flat_grad[o:o + p.size], p) for o, p in part])
        m = np.stack([self._wide(self.m[o:o + p.size], p) for o, p in part])
        m *= mu
        m += g
        u = g + mu * m
        update = orthogonalise(u)
        update *= self.lr * 0.2 * math.sqrt(cols)
        for i, (offset, p) in enumerate(part):
            self._wide(self.m[offset:offset + p.size], p)[...] = m[i]
            if self.weight_decay:
                p.data *= 1.0 - self.lr * self.weight_decay
            self._wide(p.data, p)[...] -= update[i]


def clip_grad_norm(params: Iterable[Parameter], max_norm: float) -> float:
    """Scale all gradients down together so their global L2 norm is at most max_norm; return the norm before."""
    grads = [p.grad for p in params if p.grad is not None]
    total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    if max_norm > 0 and total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads:
            g *= scale
    return total


def learning_rate(schedule: str, step: int, num_steps: int, base_lr: float,
                  warmup_steps: int = OptimSettings.warmup_steps,
                  decay_fraction: float = OptimSettings.decay_fraction) -> float:
    """The learning rate for 0-based `step`: an optional linear warmup over warmup_steps, then

    linear: a straight line from base_lr down to 0 over the steps after warmup (without warmup,
      base_lr (1 - step / num_steps): the original's decay to zero);
    cosine: half a cosine from base_lr down to 0 over the steps after warmup;
    wsd (warmup, stable, decay): base_lr, then a straight line to 0 over the last decay_fraction of the
      steps after warmup, so most of the run moves at full speed and the end still settles;
    constant: base_lr.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {schedule!r} (one of {', '.join(SCHEDULES)})")
    if step < 0 or warmup_steps < 0:
        raise ValueError(f"step ({step}) and warmup_steps ({warmup_steps}) count steps: they are at least 0")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, num_steps - warmup_steps))
    if schedule == "linear":
        return base_lr * (1.0 - progress)
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "wsd":
        return base_lr * min(1.0, (1.0 - progress) / decay_fraction) if decay_fraction > 0 else base_lr
    return base_lr
