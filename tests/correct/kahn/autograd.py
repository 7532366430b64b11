"""Autograd From Scratch, style "kahn" (Kahn's algorithm instead of a DFS).

`backward()` first finds the graph below the output with a breadth-first walk and counts, for
each node, how many edges lead into it from its consumers (its "in-degree" seen from the
output). Then it runs Kahn's algorithm from the output: a node is ready once every consumer
has sent its gradient, so each node's backward runs once, after all its contributions have
arrived. Each op stores its backward as a closure returning one gradient per parent.
Written from the handout and the template only.
"""

from collections import deque
from contextlib import contextmanager

import numpy as np

_grad_enabled = True


def _unbroadcast(grad, shape):
    """Sum `grad` over the axes NumPy broadcasting added or stretched, back to `shape`."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    axes = tuple(i for i, n in enumerate(shape) if n == 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad


class Tensor:
    __array_ufunc__ = None  # from the template: ndarray * Tensor calls Tensor.__rmul__

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

    @staticmethod
    def _make(data, parents, backward):
        out = Tensor(data)
        if _grad_enabled and any(p.requires_grad for p in parents):
            out.requires_grad = True
            out._parents = parents
            out._backward = backward
        return out

    def __add__(self, other):
        other = other if isinstance(other, Tensor) else Tensor(other)
        return Tensor._make(self.data + other.data, (self, other),
                            lambda g: (_unbroadcast(g, self.shape), _unbroadcast(g, other.shape)))

    def __radd__(self, other):
        return Tensor(other) + self

    def __mul__(self, other):
        other = other if isinstance(other, Tensor) else Tensor(other)
        return Tensor._make(self.data * other.data, (self, other),
                            lambda g: (_unbroadcast(g * other.data, self.shape),
                                       _unbroadcast(g * self.data, other.shape)))

    def __rmul__(self, other):
        return Tensor(other) * self

    def __matmul__(self, other):
        other = other if isinstance(other, Tensor) else Tensor(other)
        return Tensor._make(self.data @ other.data, (self, other),
                            lambda g: (g @ other.data.T, self.data.T @ g))

    def relu(self):
        return Tensor._make(np.maximum(self.data, 0.0), (self,),
                            lambda g: (np.where(self.data > 0, g, 0.0),))

    def sum(self):
        return Tensor._make(self.data.sum(), (self,),
                            lambda g: (g * np.ones_like(self.data),))

    def backward(self):
        if not self.requires_grad:
            raise RuntimeError("backward() needs a tensor that requires grad")
        if self.data.size != 1:
            raise RuntimeError("backward() needs a tensor with exactly one element")
        # 1. the graph below self, and each node's number of incoming edges from consumers
        indegree = {id(self): 0}
        nodes = {id(self): self}
        queue = deque([self])
        while queue:
            node = queue.popleft()
            for parent in node._parents:
                if not parent.requires_grad:
                    continue
                if id(parent) not in indegree:
                    indegree[id(parent)] = 0
                    nodes[id(parent)] = parent
                    queue.append(parent)
                indegree[id(parent)] += 1
        # 2. Kahn: run a node's backward once all its consumers have sent their gradient
        grads = {id(self): np.ones(self.shape)}
        ready = deque([self])
        while ready:
            node = ready.popleft()
            g = grads[id(node)]
            contributions = node._backward(g)
            for parent, gp in zip(node._parents, contributions):
                if not parent.requires_grad:
                    continue
                key = id(parent)
                if key in grads:
                    grads[key] += gp
                else:
                    grads[key] = np.array(gp, dtype=np.float64)
                indegree[key] -= 1
                if indegree[key] == 0:
                    ready.append(parent)
        for key, g in grads.items():
            t = nodes[key]
            if t.grad is None:
                t.grad = g
            else:
                t.grad += g

    def detach(self):
        t = Tensor(0)
        t.data = self.data
        return t

    def zero_grad(self):
        self.grad = None


@contextmanager
def no_grad():
    global _grad_enabled
    before = _grad_enabled
    _grad_enabled = False
    try:
        yield
    finally:
        _grad_enabled = before


class SGD:
    def __init__(self, params, lr):
        self.params = list(params)
        self.lr = float(lr)

    def step(self):
        for p in self.params:
            if p.grad is None:
                continue
            p.data -= self.lr * p.grad

    def zero_grad(self):
        for p in self.params:
            p.grad = None
