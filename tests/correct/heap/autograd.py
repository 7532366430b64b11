"""Autograd From Scratch, style "heap" (creation order and a priority queue, as torch's engine).

Every tensor gets a sequence number from a global counter when it is made, so a result always
has a larger number than its inputs. `backward()` needs no separate sort: it pops tensors from
a max-heap keyed by sequence number, so a tensor is processed only after every tensor of the
graph made later (all its consumers) has sent it its gradient. Each tensor is pushed once.
Backward functions are closures returning one gradient per parent. Written from the handout
and the template only.
"""

import heapq
import itertools
from contextlib import contextmanager

import numpy as np

_grad_enabled = [True]          # a one-element list: no `global` statement needed
_sequence = itertools.count()


def _unbroadcast(grad, shape):
    """Reduce `grad` to `shape` by summing the axes NumPy broadcasting created or stretched."""
    grad = np.asarray(grad)
    if grad.shape == shape:
        return grad
    padded = (1,) * (grad.ndim - len(shape)) + tuple(shape)
    axes = tuple(i for i, (n, m) in enumerate(zip(padded, grad.shape)) if n == 1 and m != 1)
    return grad.sum(axis=axes, keepdims=True).reshape(shape)


class Tensor:
    __array_ufunc__ = None  # from the template: ndarray * Tensor calls Tensor.__rmul__

    def __init__(self, data, requires_grad=False):
        self.data = np.array(data, dtype=np.float64, copy=True)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._seq = next(_sequence)
        self._parents = ()
        self._grad_fn = None

    @property
    def shape(self):
        return self.data.shape

    def __repr__(self):
        return f"Tensor({self.data!r}, requires_grad={self.requires_grad})"

    def _op(self, data, parents, grad_fn):
        out = Tensor(data)
        if _grad_enabled[0] and any(p.requires_grad for p in parents):
            out.requires_grad = True
            out._parents = parents
            out._grad_fn = grad_fn
        return out

    def __add__(self, other):
        if not isinstance(other, Tensor):
            other = Tensor(other)
        a, b = self.shape, other.shape
        return self._op(self.data + other.data, (self, other),
                        lambda g: (_unbroadcast(g, a), _unbroadcast(g, b)))

    __radd__ = __add__          # addition commutes

    def __mul__(self, other):
        if not isinstance(other, Tensor):
            other = Tensor(other)
        x, y = self.data, other.data
        return self._op(x * y, (self, other),
                        lambda g: (_unbroadcast(g * y, x.shape), _unbroadcast(g * x, y.shape)))

    __rmul__ = __mul__          # multiplication commutes

    def __matmul__(self, other):
        if not isinstance(other, Tensor):
            other = Tensor(other)
        x, y = self.data, other.data
        return self._op(x @ y, (self, other), lambda g: (g @ y.T, x.T @ g))

    def __rmatmul__(self, other):
        return Tensor(other) @ self

    def relu(self):
        positive = self.data > 0
        return self._op(np.where(positive, self.data, 0.0), (self,), lambda g: (g * positive,))

    def sum(self):
        shape = self.shape
        return self._op(np.sum(self.data), (self,), lambda g: (np.ones(shape) * g,))

    def backward(self):
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad")
        if self.data.size != 1:
            raise RuntimeError("backward() on a tensor with more than one element")
        pass_grads = {id(self): np.ones_like(self.data)}
        heap = [(-self._seq, id(self), self)]
        while heap:
            _, key, node = heapq.heappop(heap)
            g = pass_grads[key]
            if node._grad_fn is not None:
                for parent, gp in zip(node._parents, node._grad_fn(g)):
                    if not parent.requires_grad:
                        continue
                    pk = id(parent)
                    if pk in pass_grads:
                        pass_grads[pk] += gp
                    else:
                        pass_grads[pk] = np.array(gp, dtype=np.float64)
                        heapq.heappush(heap, (-parent._seq, pk, parent))
            node.grad = g.copy() if node.grad is None else np.asarray(node.grad + g)

    def detach(self):
        out = Tensor(0.0)
        out.data = self.data
        return out

    def zero_grad(self):
        self.grad = None


@contextmanager
def no_grad():
    previous = _grad_enabled[0]
    _grad_enabled[0] = False
    try:
        yield
    finally:
        _grad_enabled[0] = previous


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
