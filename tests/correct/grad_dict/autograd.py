"""Autograd From Scratch, style "grad_dict" (this pass's gradients in a dict).

The template's design, followed to the letter: each op sets `_parents` and a `_backward(grad)`
that returns one gradient per parent. `backward()` sorts the graph (post-order DFS with an
explicit stack of (node, next parent index) pairs), then accumulates the gradients of this
pass in a dict keyed by the Tensor objects themselves, and writes them into `.grad` only at
the end. Tensors hash by identity (no `__eq__` is defined). Written from the handout and the
template only.
"""

import contextlib

import numpy as np

_grad_enabled = True


def _unbroadcast(grad, shape):
    """Sum `grad` down to `shape`, undoing NumPy broadcasting."""
    grad = np.asarray(grad)
    lead = grad.ndim - len(shape)
    if lead:
        grad = grad.sum(axis=tuple(range(lead)))
    for axis, n in enumerate(shape):
        if n == 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


def _constant(x):
    """Numbers and ndarrays mixed into an op are constants: tensors that do not require grad."""
    return x if isinstance(x, Tensor) else Tensor(x)


class Tensor:
    __array_ufunc__ = None  # from the template: ndarray + Tensor calls Tensor.__radd__

    def __init__(self, data, requires_grad=False):
        self.data = np.array(data, dtype=np.float64, copy=True)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._parents = ()
        self._backward = lambda grad: ()

    @property
    def shape(self):
        return self.data.shape

    def __repr__(self):
        return f"Tensor({self.data!r}, requires_grad={self.requires_grad})"

    def _link(self, parents, backward):
        """Make self a result of `parents` (only when grad is on and a parent requires grad)."""
        if _grad_enabled and any(p.requires_grad for p in parents):
            self.requires_grad = True
            self._parents = parents
            self._backward = backward
        return self

    def __add__(self, other):
        other = _constant(other)
        out = Tensor(self.data + other.data)

        def _backward(grad):
            return _unbroadcast(grad, self.shape), _unbroadcast(grad, other.shape)
        return out._link((self, other), _backward)

    def __radd__(self, other):
        return _constant(other).__add__(self)

    def __mul__(self, other):
        other = _constant(other)
        out = Tensor(self.data * other.data)

        def _backward(grad):
            return (_unbroadcast(grad * other.data, self.shape),
                    _unbroadcast(grad * self.data, other.shape))
        return out._link((self, other), _backward)

    def __rmul__(self, other):
        return _constant(other).__mul__(self)

    def __matmul__(self, other):
        other = _constant(other)
        out = Tensor(self.data @ other.data)

        def _backward(grad):
            return grad @ other.data.T, self.data.T @ grad
        return out._link((self, other), _backward)

    def relu(self):
        out = Tensor(np.maximum(self.data, 0))

        def _backward(grad):
            return (grad * (self.data > 0),)
        return out._link((self,), _backward)

    def sum(self):
        out = Tensor(np.sum(self.data))

        def _backward(grad):
            return (np.broadcast_to(grad, self.shape),)
        return out._link((self,), _backward)

    def backward(self):
        if not self.requires_grad:
            raise RuntimeError("backward(): this tensor does not require grad")
        if self.data.size != 1:
            raise RuntimeError(f"backward(): expected 1 element, got shape {self.shape}")
        # topological order: a node comes after all of its parents
        topo, visited = [], {self}
        stack = [[self, 0]]
        while stack:
            frame = stack[-1]
            node, i = frame
            if i < len(node._parents):
                frame[1] += 1
                parent = node._parents[i]
                if parent.requires_grad and parent not in visited:
                    visited.add(parent)
                    stack.append([parent, 0])
            else:
                stack.pop()
                topo.append(node)
        grads = {self: np.ones_like(self.data)}
        for node in reversed(topo):
            grad = grads[node]
            for parent, g in zip(node._parents, node._backward(grad)):
                if not parent.requires_grad:
                    continue
                if parent in grads:
                    grads[parent] += g
                else:
                    grads[parent] = np.array(g, dtype=np.float64, copy=True)
        for node, grad in grads.items():
            if node.grad is None:
                node.grad = grad
            else:
                node.grad += grad

    def detach(self):
        d = Tensor(0.0)
        d.data = self.data
        return d

    def zero_grad(self):
        self.grad = None


@contextlib.contextmanager
def no_grad():
    global _grad_enabled
    previous = _grad_enabled
    _grad_enabled = False
    try:
        yield
    finally:
        _grad_enabled = previous


class SGD:
    def __init__(self, params, lr):
        self.params = list(params)
        self.lr = float(lr)

    def step(self):
        for p in self.params:
            if p.grad is not None:
                p.data -= self.lr * p.grad

    def zero_grad(self):
        for p in self.params:
            p.grad = None
