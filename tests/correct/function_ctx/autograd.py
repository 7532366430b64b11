"""Autograd From Scratch, style "function_ctx" (as torch.autograd.Function).

Every operation is a `Function` subclass with static `forward(ctx, *arrays)` and
`backward(ctx, grad) -> tuple of grads`, and `Function.apply(*operands)` wires a result into
the graph: it stores a node (the Function class, its ctx and its input tensors) on the result,
like torch's `grad_fn`. `backward()` orders the nodes with an iterative post-order DFS and
keeps this pass's gradients in a dict keyed by `id(tensor)`. Written from the handout and the
template only.
"""

import numpy as np


class _GradMode:
    enabled = True


def _unbroadcast(grad, shape):
    """Sum `grad` down to `shape`, undoing NumPy broadcasting."""
    grad = np.asarray(grad)
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(extra + i for i, n in enumerate(shape) if n == 1)
    return grad.sum(axis=axes).reshape(shape) if axes else grad


class Context:
    """What a Function's forward keeps for its backward."""

    def __init__(self):
        self.saved = ()

    def save_for_backward(self, *arrays):
        self.saved = arrays


class Function:
    @staticmethod
    def forward(ctx, *arrays):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *operands):
        inputs = tuple(x if isinstance(x, Tensor) else Tensor(x) for x in operands)
        ctx = Context()
        out = Tensor(cls.forward(ctx, *(x.data for x in inputs)))
        if _GradMode.enabled and any(x.requires_grad for x in inputs):
            out.requires_grad = True
            out.grad_fn = (cls, ctx, inputs)
        return out


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        return a + b

    @staticmethod
    def backward(ctx, grad):
        sa, sb = ctx.shapes
        return _unbroadcast(grad, sa), _unbroadcast(grad, sb)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved
        return _unbroadcast(grad * b, a.shape), _unbroadcast(grad * a, b.shape)


class MatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved
        return grad @ b.T, a.T @ grad


class ReLU(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a > 0)
        return np.maximum(a, 0.0)

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved
        return (grad * mask,)


class Sum(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.shape = a.shape
        return a.sum()

    @staticmethod
    def backward(ctx, grad):
        return (np.full(ctx.shape, grad, dtype=np.float64),)


class Tensor:
    __array_ufunc__ = None  # from the template: ndarray * Tensor calls Tensor.__rmul__

    def __init__(self, data, requires_grad=False):
        self.data = np.array(data, dtype=np.float64, copy=True)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.grad_fn = None  # (Function subclass, ctx, input tensors) of a recorded result

    @property
    def shape(self):
        return self.data.shape

    def __repr__(self):
        return f"Tensor({self.data!r}, requires_grad={self.requires_grad})"

    def __add__(self, other):
        return Add.apply(self, other)

    def __radd__(self, other):
        return Add.apply(other, self)

    def __mul__(self, other):
        return Mul.apply(self, other)

    def __rmul__(self, other):
        return Mul.apply(other, self)

    def __matmul__(self, other):
        return MatMul.apply(self, other)

    def __rmatmul__(self, other):
        return MatMul.apply(other, self)

    def relu(self):
        return ReLU.apply(self)

    def sum(self):
        return Sum.apply(self)

    def backward(self):
        if not self.requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad")
        if self.data.size != 1:
            raise RuntimeError("grad can be implicitly created only for 1-element outputs")
        order = []                       # post-order: inputs before the results made from them
        visited = set()
        stack = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            if node.grad_fn is not None:
                for x in node.grad_fn[2]:
                    if x.requires_grad and id(x) not in visited:
                        stack.append((x, False))
        grads = {id(self): np.ones_like(self.data)}
        for node in reversed(order):
            g = grads[id(node)]
            if node.grad_fn is not None:
                fn, ctx, inputs = node.grad_fn
                for x, gx in zip(inputs, fn.backward(ctx, g)):
                    if not x.requires_grad:
                        continue
                    if id(x) in grads:
                        grads[id(x)] += gx
                    else:
                        grads[id(x)] = np.array(gx, dtype=np.float64)
            node.grad = g.copy() if node.grad is None else np.asarray(node.grad + g)

    def detach(self):
        out = Tensor([])
        out.data = self.data
        return out

    def zero_grad(self):
        self.grad = None


class no_grad:
    """`with no_grad():` records no graph; nests, and restores the previous mode on exit."""

    def __enter__(self):
        self._previous = _GradMode.enabled
        _GradMode.enabled = False
        return self

    def __exit__(self, *exc):
        _GradMode.enabled = self._previous
        return False


class SGD:
    def __init__(self, params, lr):
        self.params = list(params)
        self.lr = float(lr)

    def step(self):
        with no_grad():
            for p in self.params:
                if p.grad is not None:
                    np.subtract(p.data, self.lr * p.grad, out=p.data)

    def zero_grad(self):
        for p in self.params:
            p.grad = None
