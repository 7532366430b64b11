"""Autograd From Scratch, style "slots" (no closures, `__slots__`, a method per op).

`Tensor` declares `__slots__` and subclasses nothing. An op's result remembers its parents,
the name of its op and what the op's backward needs (`_saved`); the backward of op `mul` is
the explicit method `_backward_mul(grad)`, found by name, so no closure is ever created.
`backward()` builds the reverse topological order with an explicit stack (a node is emitted
once all its parents are), and keeps this pass's gradients in a dict keyed by id.
Written from the handout and the template only.
"""

import numpy as np


class _Mode:
    __slots__ = ()
    grad_enabled = True


def _unbroadcast(grad, shape):
    """Sum `grad` down to `shape`: over the added leading axes and the axes of size 1."""
    grad = np.asarray(grad)
    extra = grad.ndim - len(shape)
    axes = list(range(extra))
    axes += [extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1]
    if axes:
        grad = grad.sum(axis=tuple(axes), keepdims=True)
    return grad.reshape(shape)


class Tensor:
    __slots__ = ("data", "grad", "requires_grad", "_parents", "_op", "_saved")
    __array_ufunc__ = None  # from the template: ndarray * Tensor calls Tensor.__rmul__

    def __init__(self, data, requires_grad=False):
        self.data = np.array(data, dtype=np.float64, copy=True)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._parents = ()
        self._op = None
        self._saved = None

    @property
    def shape(self):
        return self.data.shape

    def __repr__(self):
        return f"Tensor({self.data!r}, requires_grad={self.requires_grad})"

    @staticmethod
    def _wrap(x):
        return x if isinstance(x, Tensor) else Tensor(x)

    def _result(self, data, op, parents, saved=None):
        out = Tensor(data)
        if _Mode.grad_enabled and any(p.requires_grad for p in parents):
            out.requires_grad = True
            out._parents = parents
            out._op = op
            out._saved = saved
        return out

    # ------------------------------------------------------------------ add
    def __add__(self, other):
        other = Tensor._wrap(other)
        return self._result(self.data + other.data, "add", (self, other))

    def __radd__(self, other):
        return Tensor._wrap(other).__add__(self)

    def _backward_add(self, grad):
        a, b = self._parents
        return _unbroadcast(grad, a.shape), _unbroadcast(grad, b.shape)

    # ------------------------------------------------------------------ mul
    def __mul__(self, other):
        other = Tensor._wrap(other)
        return self._result(self.data * other.data, "mul", (self, other))

    def __rmul__(self, other):
        return Tensor._wrap(other).__mul__(self)

    def _backward_mul(self, grad):
        a, b = self._parents
        return _unbroadcast(grad * b.data, a.shape), _unbroadcast(grad * a.data, b.shape)

    # ------------------------------------------------------------------ matmul
    def __matmul__(self, other):
        other = Tensor._wrap(other)
        return self._result(self.data @ other.data, "matmul", (self, other))

    def _backward_matmul(self, grad):
        a, b = self._parents
        return grad @ b.data.T, a.data.T @ grad

    # ------------------------------------------------------------------ relu
    def relu(self):
        return self._result(np.maximum(self.data, 0.0), "relu", (self,), self.data > 0)

    def _backward_relu(self, grad):
        return (grad * self._saved,)

    # ------------------------------------------------------------------ sum
    def sum(self):
        return self._result(self.data.sum(), "sum", (self,))

    def _backward_sum(self, grad):
        return (np.ones(self._parents[0].shape) * grad,)

    # ------------------------------------------------------------------ backward
    def backward(self):
        if not self.requires_grad:
            raise RuntimeError("cannot call backward() on a tensor that does not require grad")
        if self.data.size != 1:
            raise RuntimeError("backward() is only defined for tensors with one element")
        order, done, stack = [], set(), [self]
        while stack:
            node = stack[-1]
            if id(node) in done:
                stack.pop()
                continue
            pending = [p for p in node._parents if p.requires_grad and id(p) not in done]
            if pending:
                stack.extend(pending)
            else:
                stack.pop()
                done.add(id(node))
                order.append(node)
        grads = {id(self): np.ones_like(self.data)}
        for node in reversed(order):
            g = grads[id(node)]
            if node._op is not None:
                contributions = getattr(node, "_backward_" + node._op)(g)
                for parent, gp in zip(node._parents, contributions):
                    if parent.requires_grad:
                        old = grads.get(id(parent))
                        if old is None:
                            grads[id(parent)] = np.array(gp, dtype=np.float64)
                        else:
                            old += gp
            if node.grad is None:
                node.grad = np.array(g, dtype=np.float64)
            else:
                node.grad += g

    def detach(self):
        out = Tensor(0.0)
        out.data = self.data
        return out

    def zero_grad(self):
        self.grad = None


class no_grad:
    __slots__ = ("_previous",)

    def __enter__(self):
        self._previous = _Mode.grad_enabled
        _Mode.grad_enabled = False

    def __exit__(self, exc_type, exc, tb):
        _Mode.grad_enabled = self._previous


class SGD:
    __slots__ = ("params", "lr")

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
