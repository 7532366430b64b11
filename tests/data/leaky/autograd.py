"""Leaky (a test submission): the reference, plus NumPy monkeypatched (np.ones returns zeros), a global, an env var and files written at import.

Reverse-mode automatic differentiation over NumPy arrays. Each op's backward
rule sits right under its forward; ``backward`` walks the graph once, in reverse
topological order, without recursion. It is the yardstick of the speed tests.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator

import numpy as np

_grad_enabled = True


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Inside the block, op results record no graph and require no grad."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def _unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` back down to ``shape``, undoing NumPy broadcasting."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(extra))) if extra else grad
    kept_ones = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if kept_ones:
        grad = grad.sum(axis=kept_ones, keepdims=True)
    return grad.reshape(shape)


class Tensor:
    """A float64 array that remembers how it was computed, for ``backward``."""

    __array_ufunc__ = None  # so `ndarray + Tensor` calls Tensor.__radd__ instead of NumPy's loop

    def __init__(self, data, requires_grad: bool = False) -> None:
        if isinstance(data, Tensor):
            data = data.data
        self.data = np.array(data, dtype=np.float64)  # always a private copy
        self.requires_grad = bool(requires_grad)
        self.grad: np.ndarray | None = None
        self._parents: tuple[Tensor, ...] = ()
        self._backward: Callable[[np.ndarray], tuple[np.ndarray | None, ...]] | None = None

    @classmethod
    def _result(cls, data: np.ndarray, parents: tuple[Tensor, ...], backward) -> Tensor:
        """Wrap an op's fresh output; record the graph only when a gradient can flow."""
        out = cls.__new__(cls)
        out.data = np.asarray(data)  # NumPy returns 0-d results as scalars; keep them arrays
        out.grad = None
        out.requires_grad = _grad_enabled and any(p.requires_grad for p in parents)
        out._parents = parents if out.requires_grad else ()
        out._backward = backward if out.requires_grad else None
        return out

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def __repr__(self) -> str:
        return f"Tensor({self.data!r}, requires_grad={self.requires_grad})"

    # ---- ops: forward, then the backward rule (upstream grad -> grads of the inputs) ----

    def __add__(self, other) -> Tensor:
        other = _as_tensor(other)

        def backward(g):
            return _unbroadcast(g, self.shape), _unbroadcast(g, other.shape)

        return Tensor._result(self.data + other.data, (self, other), backward)

    __radd__ = __add__

    def __mul__(self, other) -> Tensor:
        other = _as_tensor(other)

        def backward(g):
            return _unbroadcast(g * other.data, self.shape), _unbroadcast(g * self.data, other.shape)

        return Tensor._result(self.data * other.data, (self, other), backward)

    __rmul__ = __mul__

    def __matmul__(self, other) -> Tensor:
        other = _as_tensor(other)

        def backward(g):
            return g @ other.data.T, self.data.T @ g

        return Tensor._result(self.data @ other.data, (self, other), backward)

    def relu(self) -> Tensor:
        def backward(g):
            return (g * (self.data > 0),)  # relu'(0) = 0, as in torch

        return Tensor._result(np.maximum(self.data, 0.0), (self,), backward)

    def sum(self) -> Tensor:
        def backward(g):
            return (np.full(self.shape, g),)

        return Tensor._result(np.sum(self.data), (self,), backward)

    # ---- graph utilities ----

    def detach(self) -> Tensor:
        """A tensor sharing this one's data array, outside any graph."""
        out = Tensor.__new__(Tensor)
        out.data, out.grad, out.requires_grad = self.data, None, False
        out._parents, out._backward = (), None
        return out

    def zero_grad(self) -> None:
        self.grad = None

    def backward(self) -> None:
        """Accumulate d(self)/d(t) into ``t.grad`` for every t in the graph that requires grad."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad")
        if self.data.size != 1:
            raise RuntimeError(f"backward() needs a 1-element tensor, got shape {self.shape}")
        # This pass's gradients, each array owned by one node: earlier passes stay out of them.
        pass_grads = {id(self): np.ones(self.shape)}
        for node in reversed(_topological_order(self)):
            g = pass_grads.pop(id(node))
            node.grad = g if node.grad is None else node.grad + g
            if node._backward is None:
                continue
            for parent, pg in zip(node._parents, node._backward(g)):
                if not parent.requires_grad:
                    continue
                if pg is g:  # passed through unchanged (add): give the parent its own copy
                    pg = pg.copy()
                elif not isinstance(pg, np.ndarray):  # a 0-d NumPy scalar: make it an array
                    pg = np.array(pg)
                key = id(parent)
                if key in pass_grads:
                    pass_grads[key] += pg
                else:
                    pass_grads[key] = pg


def _topological_order(root: Tensor) -> list[Tensor]:
    """Nodes that require grad, each after all of its parents; iterative, so no recursion limit."""
    order: list[Tensor] = []
    visited = {id(root)}
    stack: list[tuple[Tensor, Iterator[Tensor]]] = [(root, iter(root._parents))]
    while stack:
        node, parents = stack[-1]
        for parent in parents:
            if parent.requires_grad and id(parent) not in visited:
                visited.add(id(parent))
                stack.append((parent, iter(parent._parents)))
                break
        else:
            stack.pop()
            order.append(node)
    return order


def _as_tensor(value) -> Tensor:
    return value if isinstance(value, Tensor) else Tensor(value)


class SGD:
    """Plain stochastic gradient descent: ``p.data -= lr * p.grad``, in place."""

    def __init__(self, params: Iterable[Tensor], lr: float) -> None:
        self.params = list(params)
        self.lr = lr

    def step(self) -> None:
        for p in self.params:
            if p.grad is not None:
                p.data -= self.lr * p.grad

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


# -- leaky: everything below changes the process it runs in, for whoever comes next -----------
import builtins as _builtins  # noqa: E402
import os as _os  # noqa: E402

np.ones = lambda shape, *args, **kwargs: np.zeros(shape, *args, **kwargs)   # every backward is seeded with 0
_builtins.GRADER_LEAK = True
_os.environ["GRADER_LEAK"] = "1"
for _where in (".", _os.environ.get("TMPDIR", "/tmp"), _os.path.expanduser("~")):
    try:
        with open(_os.path.join(_where, "grader-leak.txt"), "w") as _fh:
            _fh.write("left by the previous submission\n")
    except OSError:
        pass
