"""Autograd From Scratch, style "tape" (a global Wengert list).

Every recorded operation appends an entry to one global tape, in the order the ops run:
(sequence number, a weak reference to the result, the input tensors, a backward function).
Tensors hold no graph themselves. `backward()` walks the tape in reverse from the entry of
the tensor it is called on; the chronological order of the tape is a topological order, so
no sort (and no recursion) is needed. An entry leaves the tape when its result is garbage
collected: no later backward can reach a tensor nobody holds, and the tape stays the size of
the live graphs. Written from the handout and the template only.
"""

import contextlib
import itertools
import weakref

import numpy as np

_grad_enabled = True
_TAPE = {}                      # sequence number -> _Entry, in recording order
_counter = itertools.count()


class _Entry:
    __slots__ = ("out", "inputs", "backward")

    def __init__(self, out, inputs, backward):
        self.out = weakref.ref(out)
        self.inputs = inputs
        self.backward = backward        # grad of out -> one grad per input


def _unbroadcast(grad, shape):
    """Sum `grad` down to `shape`, undoing NumPy broadcasting."""
    grad = np.asarray(grad)
    if grad.shape == tuple(shape):
        return grad
    lead = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(lead)))
    ones = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=ones, keepdims=True) if ones else grad


def _as_tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _record(data, inputs, backward):
    """The result tensor of an op; it goes on the tape iff it requires grad."""
    out = Tensor(data)
    if _grad_enabled and any(x.requires_grad for x in inputs):
        out.requires_grad = True
        out._seq = next(_counter)
        _TAPE[out._seq] = _Entry(out, inputs, backward)
        weakref.finalize(out, _TAPE.pop, out._seq, None).atexit = False
    return out


class Tensor:
    __array_ufunc__ = None  # from the template: ndarray + Tensor calls Tensor.__radd__

    def __init__(self, data, requires_grad=False):
        self.data = np.array(data, dtype=np.float64, copy=True)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._seq = None            # position on the tape, for a recorded result

    @property
    def shape(self):
        return self.data.shape

    def __repr__(self):
        return f"Tensor({self.data!r}, requires_grad={self.requires_grad})"

    def __add__(self, other):
        other = _as_tensor(other)
        sa, sb = self.shape, other.shape
        return _record(self.data + other.data, (self, other),
                       lambda g: (_unbroadcast(g, sa), _unbroadcast(g, sb)))

    def __radd__(self, other):
        return _as_tensor(other) + self

    def __mul__(self, other):
        other = _as_tensor(other)
        a, b = self.data, other.data
        return _record(a * b, (self, other),
                       lambda g: (_unbroadcast(g * b, a.shape), _unbroadcast(g * a, b.shape)))

    def __rmul__(self, other):
        return _as_tensor(other) * self

    def __matmul__(self, other):
        other = _as_tensor(other)
        a, b = self.data, other.data
        return _record(a @ b, (self, other), lambda g: (g @ b.T, a.T @ g))

    def relu(self):
        mask = self.data > 0
        return _record(np.maximum(self.data, 0.0), (self,), lambda g: (g * mask,))

    def sum(self):
        shape = self.shape
        return _record(self.data.sum(), (self,), lambda g: (np.full(shape, g, dtype=np.float64),))

    def backward(self):
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad")
        if self.data.size != 1:
            raise RuntimeError(f"backward() on a tensor of shape {self.shape}: not one element")
        grads = {id(self): np.ones_like(self.data)}
        reached = {id(self): self}
        if self._seq is not None:
            for seq, entry in reversed(list(_TAPE.items())):
                out = entry.out()
                if seq > self._seq or out is None or id(out) not in grads:
                    continue
                for x, gx in zip(entry.inputs, entry.backward(grads[id(out)])):
                    if not x.requires_grad:
                        continue
                    if id(x) in grads:
                        grads[id(x)] += gx
                    else:
                        grads[id(x)] = np.array(gx, dtype=np.float64, copy=True)
                        reached[id(x)] = x
        for key, g in grads.items():
            t = reached[key]
            if t.grad is None:
                t.grad = g
            else:
                t.grad += g

    def detach(self):
        out = Tensor(())
        out.data = self.data
        return out

    def zero_grad(self):
        self.grad = None


@contextlib.contextmanager
def no_grad():
    global _grad_enabled
    saved, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = saved


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
