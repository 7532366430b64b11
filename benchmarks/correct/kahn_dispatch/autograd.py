"""A correct lab solution in another style (benchmark fixture): ops are named, their backward
rules sit in one dispatch table, and backward orders the graph with Kahn's algorithm
(in-degree counts), not a depth-first search."""

import contextlib

import numpy as np

_state = {"grad": True}


@contextlib.contextmanager
def no_grad():
    old = _state["grad"]
    _state["grad"] = False
    try:
        yield
    finally:
        _state["grad"] = old


def _reduce_to(g, shape):
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    return g.reshape(shape)


def _wrap(x):
    return x if isinstance(x, Tensor) else Tensor(x)


RULES = {
    "add": lambda t, g: [_reduce_to(g, t.inputs[0].shape), _reduce_to(g, t.inputs[1].shape)],
    "mul": lambda t, g: [_reduce_to(g * t.inputs[1].data, t.inputs[0].shape),
                         _reduce_to(g * t.inputs[0].data, t.inputs[1].shape)],
    "matmul": lambda t, g: [g @ t.inputs[1].data.T, t.inputs[0].data.T @ g],
    "relu": lambda t, g: [np.where(t.inputs[0].data > 0, g, 0.0)],
    "sum": lambda t, g: [np.ones_like(t.inputs[0].data) * g],
}


class Tensor:
    __array_ufunc__ = None

    def __init__(self, data, requires_grad=False):
        self.data = np.array(data.data if isinstance(data, Tensor) else data, dtype=np.float64)
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self.op, self.inputs = None, []

    @property
    def shape(self):
        return self.data.shape

    def _make(self, op, inputs, data):
        out = Tensor(data)
        if _state["grad"] and any(t.requires_grad for t in inputs):
            out.requires_grad, out.op, out.inputs = True, op, inputs
        return out

    def __add__(self, other):
        other = _wrap(other)
        return self._make("add", [self, other], self.data + other.data)

    def __radd__(self, other):
        return _wrap(other) + self

    def __mul__(self, other):
        other = _wrap(other)
        return self._make("mul", [self, other], self.data * other.data)

    def __rmul__(self, other):
        return _wrap(other) * self

    def __matmul__(self, other):
        other = _wrap(other)
        return self._make("matmul", [self, other], self.data @ other.data)

    def relu(self):
        return self._make("relu", [self], np.maximum(self.data, 0))

    def sum(self):
        return self._make("sum", [self], self.data.sum())

    def detach(self):
        out = Tensor(0.0)
        out.data = self.data
        return out

    def zero_grad(self):
        self.grad = None

    def backward(self):
        if not self.requires_grad or self.data.size != 1:
            raise RuntimeError("backward() needs a one-element tensor that requires grad")
        nodes, todo, seen = [], [self], {id(self)}
        while todo:  # every node that requires grad, reachable from self
            t = todo.pop()
            nodes.append(t)
            for i in t.inputs:
                if i.requires_grad and id(i) not in seen:
                    seen.add(id(i))
                    todo.append(i)
        users = {id(t): 0 for t in nodes}
        for t in nodes:
            for i in t.inputs:
                if i.requires_grad:
                    users[id(i)] += 1
        grads = {id(self): np.ones_like(self.data)}
        ready = [self]
        while ready:  # Kahn: a node is ready once every user has sent its contribution
            t = ready.pop()
            g = grads.pop(id(t))
            t.grad = g.copy() if t.grad is None else t.grad + g
            if t.op is None:
                continue
            for i, gi in zip(t.inputs, RULES[t.op](t, g)):
                if not i.requires_grad:
                    continue
                gi = np.array(gi, dtype=np.float64)
                grads[id(i)] = grads[id(i)] + gi if id(i) in grads else gi
                users[id(i)] -= 1
                if users[id(i)] == 0:
                    ready.append(i)


class SGD:
    def __init__(self, params, lr):
        self.params, self.lr = [p for p in params], lr

    def step(self):
        for p in self.params:
            if p.grad is not None:
                p.data -= self.lr * p.grad

    def zero_grad(self):
        for p in self.params:
            p.zero_grad()
