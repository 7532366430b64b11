"""torch.autograd as the oracle: drives torch through the interpreter's Adapter interface.

float64 throughout, ``retain_grad()`` on every intermediate that requires grad (the lab keeps
intermediates' grads), ``retain_graph=True`` so a second backward on one graph works.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch


def warm_up() -> None:
    """Pay torch's lazy first-use costs now: the first ``torch.optim.SGD`` imports torch._dynamo (~1.3 s),
    which a long-lived grading process would otherwise charge to the first submission it diagnoses."""
    param = torch.zeros(1, requires_grad=True)
    torch.optim.SGD([param], lr=0.1)


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

    def sgd(self, params: Iterable[torch.Tensor], lr: float) -> torch.optim.SGD:
        return torch.optim.SGD(params, lr=lr)

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
