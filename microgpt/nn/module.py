"""Module and Parameter: the bookkeeping that lets a model list, save and load its weights."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from microgpt.autograd import Tensor
from microgpt.errors import clipped


class Parameter(Tensor):
    """A Tensor that is a trainable weight: it always requires a gradient."""

    __slots__ = ()

    def __init__(self, data: Any, dtype: Any = None) -> None:
        super().__init__(data, requires_grad=True, dtype=dtype)


class Module:
    """Base class: assigning a Parameter or Module to an attribute registers it, in order."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value: Any) -> None:
        registry = self.__dict__.get("_parameters"), self.__dict__.get("_modules")
        parameters, modules = registry
        if parameters is None:
            if isinstance(value, (Parameter, Module)):
                raise AttributeError(f"{type(self).__name__}.{name}: call super().__init__() before assigning "
                                     "parameters or modules")
        elif isinstance(value, Parameter):
            modules.pop(name, None)
            parameters[name] = value
        elif isinstance(value, Module):
            parameters.pop(name, None)
            modules[name] = value
        elif value is None:  # as PyTorch: None unregisters
            parameters.pop(name, None)
            modules.pop(name, None)
        elif name in parameters or name in modules:
            kind = "a Parameter" if name in parameters else "a Module"
            raise TypeError(f"{type(self).__name__}.{name} holds {kind}: assign {kind} or None, not "
                            f"{type(value).__name__}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """("child.param", Parameter) pairs, depth first, in registration order; a Parameter registered
        under two names comes once, under the first (so it is counted, saved and stepped once)."""
        seen: set[int] = set()
        for name, p in self._all_parameters(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _all_parameters(self, prefix: str) -> Iterator[tuple[str, Parameter]]:
        for name, p in self._parameters.items():
            yield prefix + name, p
        for name, child in self._modules.items():
            yield from child._all_parameters(prefix + name + ".")

    def modules(self) -> Iterator[Module]:
        """This module and every module below it, depth first."""
        yield self
        for child in self._modules.values():
            yield from child.modules()

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        """Forget every gradient (with an optimizer attached, the next backward writes into its buffer)."""
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> Module:
        """Switch this module and every child to training (or evaluation) mode."""
        object.__setattr__(self, "training", mode)
        for child in self._modules.values():
            child.train(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every weight, by name."""
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Copy weights in place (so optimiser views stay valid); name every mismatch in one error."""
        state = {name: value.data if isinstance(value, Tensor) else value for name, value in state.items()}
        own = dict(self.named_parameters())
        missing = [n for n in own if n not in state]
        unexpected = [n for n in state if n not in own]
        wrong = [
            f"{n}: checkpoint {tuple(np.shape(state[n]))} vs model {own[n].shape}"
            for n in own
            if n in state and tuple(np.shape(state[n])) != own[n].shape
        ]
        def listed(items: list[str], sep: str = ", ") -> str:  # a file's 200,000 stray names: the first few
            return sep.join(clipped(item) for item in items[:5]) + (
                f" and {len(items) - 5:,} more" if len(items) > 5 else "")

        problems = []
        if strict and missing:
            problems.append(f"missing keys: {listed(missing)}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {listed(unexpected)}")
        if wrong:
            problems.append(f"shape mismatch: {listed(wrong, '; ')}")
        if problems:
            raise KeyError("load_state_dict: " + " | ".join(problems))
        for name, p in own.items():
            if name in state:
                p.data[...] = np.asarray(state[name], dtype=p.dtype)

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())
