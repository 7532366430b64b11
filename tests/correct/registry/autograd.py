"""Autograd From Scratch, style "registry" (an op table and one dispatcher).

Each op is registered once in `_OPS` as a pair (forward, backward) of plain functions on
arrays; `_apply(name, *operands)` wraps numbers and ndarrays into constant Tensors, runs the
forward, and records `(name, inputs, saved)` on the result. The Tensor's operators are one-line
calls of `_apply`. `backward()` is an iterative DFS over an explicit stack with a visited set
of ids (enter/exit markers give the post-order), then one loop that looks up each node's
backward in the table. Written from the handout and the template only.
"""

import contextlib
import threading

import numpy as np

_state = threading.local()


def _grad_on():
    return getattr(_state, "grad_enabled", True)


def _unbroadcast(grad, shape):
    """Sum `grad` down to `shape`, undoing NumPy broadcasting."""
    grad = np.asarray(grad)
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1 and grad.shape[axis] > 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


_OPS = {}


def register(name):
    def decorate(pair):
        _OPS[name] = pair()
        return pair
    return decorate


@register("add")
def _add():
    def forward(a, b):
        return a + b, (a.shape, b.shape)

    def backward(saved, g):
        sa, sb = saved
        return _unbroadcast(g, sa), _unbroadcast(g, sb)
    return forward, backward


@register("mul")
def _mul():
    def forward(a, b):
        return a * b, (a, b)

    def backward(saved, g):
        a, b = saved
        return _unbroadcast(g * b, a.shape), _unbroadcast(g * a, b.shape)
    return forward, backward


@register("matmul")
def _matmul():
    def forward(a, b):
        return a @ b, (a, b)

    def backward(saved, g):
        a, b = saved
        return g @ b.T, a.T @ g
    return forward, backward


@register("relu")
def _relu():
    def forward(a):
        return np.maximum(a, 0.0), a > 0

    def backward(mask, g):
        return (g * mask,)
    return forward, backward


@register("sum")
def _sum():
    def forward(a):
        return a.sum(), a.shape

    def backward(shape, g):
        return (np.broadcast_to(g, shape),)
    return forward, backward


def _apply(name, *operands):
    inputs = tuple(x if isinstance(x, Tensor) else Tensor(x) for x in operands)
    forward, _ = _OPS[name]
    data, saved = forward(*(x.data for x in inputs))
    out = Tensor(data)
    if _grad_on() and any(x.requires_grad for x in inputs):
        out.requires_grad = True
        out._node = (name, inputs, saved)
    return out


class Tensor:
    __array_ufunc__ = None  # from the template: ndarray + Tensor calls Tensor.__radd__

    def __init__(self, data, requires_grad=False):
        self.data = np.array(data, dtype=np.float64, copy=True)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._node = None

    @property
    def shape(self):
        return self.data.shape

    def __repr__(self):
        return f"Tensor({self.data!r}, requires_grad={self.requires_grad})"

    def __add__(self, other):
        return _apply("add", self, other)

    def __radd__(self, other):
        return _apply("add", other, self)

    def __mul__(self, other):
        return _apply("mul", self, other)

    def __rmul__(self, other):
        return _apply("mul", other, self)

    def __matmul__(self, other):
        return _apply("matmul", self, other)

    def relu(self):
        return _apply("relu", self)

    def sum(self):
        return _apply("sum", self)

    def _inputs(self):
        return self._node[1] if self._node is not None else ()

    def backward(self):
        if not self.requires_grad:
            raise RuntimeError("backward(): tensor does not require grad")
        if self.data.size != 1:
            raise RuntimeError("backward(): tensor must have exactly one element")
        post, visited, stack = [], set(), [(True, self)]
        while stack:
            entering, node = stack.pop()
            if not entering:
                post.append(node)
            elif id(node) not in visited:
                visited.add(id(node))
                stack.append((False, node))
                stack.extend((True, x) for x in node._inputs() if x.requires_grad)
        grads = {id(self): np.ones(self.shape)}
        for node in reversed(post):
            g = grads[id(node)]
            if node._node is not None:
                name, inputs, saved = node._node
                for x, gx in zip(inputs, _OPS[name][1](saved, g)):
                    if x.requires_grad:
                        k = id(x)
                        if k in grads:
                            grads[k] += gx
                        else:
                            grads[k] = np.array(gx, dtype=np.float64)
            if node.grad is None:
                node.grad = g.copy()
            else:
                node.grad += g

    def detach(self):
        out = Tensor(0.0)
        out.data = self.data
        return out

    def zero_grad(self):
        self.grad = None


@contextlib.contextmanager
def no_grad():
    before = _grad_on()
    _state.grad_enabled = False
    try:
        yield
    finally:
        _state.grad_enabled = before


class SGD:
    def __init__(self, params, lr):
        self.params = list(params)
        self.lr = float(lr)

    def step(self):
        with no_grad():
            for p in self.params:
                if p.grad is not None:
                    p.data -= self.lr * p.grad

    def zero_grad(self):
        for p in self.params:
            p.grad = None
