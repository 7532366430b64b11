"""Autograd From Scratch, style "closures" (micrograd on arrays).

Each operation's backward closure sits right under its forward code, as in micrograd's
engine.py. A closure reads the gradient of *this* pass from the node's `_g` slot and adds its
contributions into each parent's `_g`; `backward()` resets `_g` for the graph, runs the
closures in reverse topological order (found with an explicit stack, no recursion), then adds
every `_g` into `.grad`. Written from the handout and the template only.
"""

import contextlib

import numpy as np

_grad_enabled = True


def _unbroadcast(grad, shape):
    """Sum `grad` down to `shape`: the leading axes broadcasting added, then the size-1 axes."""
    grad = np.asarray(grad)
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


class Tensor:
    __array_ufunc__ = None  # from the template: ndarray + Tensor calls Tensor.__radd__

    def __init__(self, data, requires_grad=False):
        self.data = np.array(data, dtype=np.float64, copy=True)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._parents = ()
        self._backward = lambda: None
        self._g = None  # gradient of the current backward pass

    @property
    def shape(self):
        return self.data.shape

    def __repr__(self):
        return f"Tensor({self.data!r}, requires_grad={self.requires_grad})"

    def _result(self, data, parents):
        """A new tensor from `data`; it records `parents` iff it requires grad."""
        out = Tensor(data)
        if _grad_enabled and any(p.requires_grad for p in parents):
            out.requires_grad = True
            out._parents = parents
        return out

    @staticmethod
    def _send(node, grad):
        """Add `grad` into `node._g` (a fresh array on the first contribution)."""
        if not node.requires_grad:
            return
        grad = _unbroadcast(grad, node.shape)
        if node._g is None:
            node._g = np.array(grad, dtype=np.float64, copy=True)
        else:
            node._g += grad

    def __add__(self, other):
        other = other if isinstance(other, Tensor) else Tensor(other)
        out = self._result(self.data + other.data, (self, other))

        def _backward():
            Tensor._send(self, out._g)
            Tensor._send(other, out._g)
        out._backward = _backward
        return out

    def __radd__(self, other):
        return self + other

    def __mul__(self, other):
        other = other if isinstance(other, Tensor) else Tensor(other)
        out = self._result(self.data * other.data, (self, other))

        def _backward():
            Tensor._send(self, out._g * other.data)
            Tensor._send(other, out._g * self.data)
        out._backward = _backward
        return out

    def __rmul__(self, other):
        return self * other

    def __matmul__(self, other):
        other = other if isinstance(other, Tensor) else Tensor(other)
        out = self._result(self.data @ other.data, (self, other))

        def _backward():
            Tensor._send(self, out._g @ other.data.T)
            Tensor._send(other, self.data.T @ out._g)
        out._backward = _backward
        return out

    def relu(self):
        out = self._result(np.maximum(self.data, 0.0), (self,))

        def _backward():
            Tensor._send(self, out._g * (self.data > 0))
        out._backward = _backward
        return out

    def sum(self):
        out = self._result(self.data.sum(), (self,))

        def _backward():
            Tensor._send(self, np.broadcast_to(out._g, self.shape))
        out._backward = _backward
        return out

    def _topological_order(self):
        """Every node of the graph, each parent before its children (post-order DFS, stack)."""
        order, seen = [], {id(self)}
        stack = [(self, iter(self._parents))]
        while stack:
            node, parents = stack[-1]
            for parent in parents:
                if id(parent) not in seen:
                    seen.add(id(parent))
                    stack.append((parent, iter(parent._parents)))
                    break
            else:
                stack.pop()
                order.append(node)
        return order

    def backward(self):
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad")
        if self.data.size != 1:
            raise RuntimeError(f"backward() needs a 1-element tensor, not shape {self.shape}")
        order = self._topological_order()
        for node in order:
            node._g = None
        self._g = np.ones_like(self.data)
        for node in reversed(order):
            if node._g is not None:
                node._backward()
        for node in order:
            if node._g is not None:
                if node.grad is None:
                    node.grad = node._g
                else:
                    node.grad += node._g
                node._g = None

    def detach(self):
        out = Tensor(0.0)
        out.data = self.data
        return out

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
