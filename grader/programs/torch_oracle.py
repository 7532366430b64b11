"""torch.autograd as the oracle: drives torch through the interpreter's Adapter interface.

float64 throughout, ``retain_grad()`` on every intermediate that requires grad (the lab keeps
intermediates' grads), ``retain_graph=True`` so a second backward on one graph works.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch


class PlainSGD:
    """``torch.optim.SGD`` at its defaults (no momentum, dampening, weight decay or nesterov), which is
    all the lab's ``SGD`` is: ``step`` does ``p -= lr * p.grad``, ``zero_grad`` sets the grads to None.
    torch's own class costs ~1.3 s on first use (it imports torch._dynamo), once per grading process."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float) -> None:
        self.params, self.lr = list(params), lr
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        for p in self.params:
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")

    @torch.no_grad()
    def step(self) -> None:
        for p in self.params:
            if p.grad is not None:
                p.add_(p.grad, alpha=-self.lr)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


class TorchAdapter:
    def tensor(self, data: Any, requires_grad: bool) -> torch.Tensor:
        return torch.tensor(np.array(data, dtype=np.float64), requires_grad=requires_grad)

    def operand(self, value: Any) -> Any:
        return torch.tensor(np.array(value, dtype=np.float64)) if isinstance(value, np.ndarray) else value

    def after_op(self, result: torch.Tensor) -> torch.Tensor:
        if result.requires_grad and not result.is_leaf:
            result.retain_grad()
        return result

    def backward(self, t: torch.Tensor) -> None:
        t.backward(retain_graph=True)

    def zero_grad(self, t: torch.Tensor) -> None:
        t.grad = None

    def no_grad(self) -> Any:
        return torch.no_grad()

    def sgd(self, params: Iterable[torch.Tensor], lr: float) -> PlainSGD:
        return PlainSGD(params, lr=lr)

    def is_runtime_error(self, exc: BaseException) -> bool:
        return isinstance(exc, RuntimeError) and not isinstance(exc, NotImplementedError)

    def read_data(self, t: torch.Tensor) -> np.ndarray:
        return t.detach().numpy()

    def read_grad(self, t: torch.Tensor) -> np.ndarray | None:
        return None if t.grad is None else t.grad.numpy()

    def shares_data(self, a: torch.Tensor, b: torch.Tensor) -> bool:
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()

    def keep(self, t: torch.Tensor) -> torch.Tensor:
        return t.detach()

    def grad_writable(self, t: torch.Tensor) -> bool:
        return t.grad is not None
