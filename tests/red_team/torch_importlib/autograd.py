"""Autograd From Scratch: reverse-mode automatic differentiation with NumPy.

You implement a small `Tensor` class that wraps a NumPy array, records the operations
that produced it, and computes gradients with `backward()`, plus `no_grad()` and an `SGD`
optimiser. Read handout.md first: it states the contract these docstrings repeat, and how
each part is graded.

Every `raise NotImplementedError(...)` below is yours to replace. The tag in the `TODO`
above it names the part of the lab that grades it: ops (30), mlp (20), graph (20),
training (15), speed (15). Keep every name and signature as it is: the tests call them.

Rules: NumPy and the Python standard library only (torch, jax, tensorflow, the PyPI
`autograd` package and friends are blocked when your code is graded). Only this file is
graded.
"""

import numpy as np
import numpy.typing as npt

# One module-level switch that every operation reads: True normally, False inside
# `with no_grad():`. You may replace it with your own mechanism.
_grad_enabled: bool = True


def _unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum `grad` down to `shape`, undoing NumPy broadcasting.

    A forward op may broadcast an operand (a bias of shape (H,) added to (N, H), a scalar
    of shape () multiplied by a matrix, a (N, 1) column added to (N, H)). The gradient
    that arrives for that operand has the *result's* shape, and must be summed over every
    broadcast axis so that it ends up with the operand's own `shape`:
    leading axes that broadcasting added, and axes where the operand had size 1.

        _unbroadcast(np.ones((4, 3)), (3,))    -> array of shape (3,),   every entry 4.0
        _unbroadcast(np.ones((4, 3)), (1, 3))  -> array of shape (1, 3), every entry 4.0
        _unbroadcast(np.ones((4, 3)), (4, 1))  -> array of shape (4, 1), every entry 3.0
        _unbroadcast(np.ones((4, 3)), ())      -> array of shape (),     12.0
    """
    # TODO (part ops): sum over the leading axes, then over the axes where shape has a 1.
    raise NotImplementedError("_unbroadcast is not implemented yet (part ops)")


class Tensor:
    """A float64 NumPy array that remembers how it was computed.

    Attributes:
        data: the values, always a float64 `np.ndarray` owned by this tensor.
        grad: `None` until a backward pass reaches this tensor; then a writable float64
            array of the same shape as `data`, owned by this tensor alone.
        requires_grad: whether gradients flow to this tensor.
        _parents: the tensors this one was computed from (empty for a leaf, and for any
            result that records no graph).
        _backward: a function `_backward(grad) -> tuple[np.ndarray, ...]`. Given `grad`,
            the gradient flowing into this tensor in the current backward pass, it returns
            one gradient per tensor in `_parents`, in the same order, each of that
            parent's shape. Each operation defines it right next to its forward code.
            A leaf has no parents and returns ().
        (`_parents` and `_backward` are a suggested design; the tests only use the public
        API, so you may change anything whose name starts with an underscore.)

    Operators accept, as the other operand, a Tensor, a Python number or an ndarray, on
    either side (`t + 1`, `1 + t`, `np.ones(3) * t`); numbers and arrays are treated as
    constants (tensors that do not require grad). NumPy broadcasting applies.
    """

    # Makes `ndarray + Tensor` and `ndarray * Tensor` call Tensor.__radd__ / __rmul__
    # instead of NumPy looping over the Tensor as if it were a scalar. Leave it as is.
    __array_ufunc__ = None

    def __init__(self, data: npt.ArrayLike, requires_grad: bool = False) -> None:
        """Wrap `data` (a number, nested list, or ndarray of any dtype, integers included).

        The values are always copied into a new float64 array, so nothing the caller holds
        is ever changed by this tensor, and nothing the caller changes later affects it.
        """
        self.data: np.ndarray = np.array(data, dtype=np.float64, copy=True)
        self.grad: np.ndarray | None = None
        self.requires_grad: bool = bool(requires_grad)
        self._parents: tuple["Tensor", ...] = ()
        self._backward = lambda grad: ()

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of `data`."""
        return self.data.shape

    def __repr__(self) -> str:
        return f"Tensor({self.data!r}, requires_grad={self.requires_grad})"

    # ----------------------------------------------------------------- operations
    # Each operation: wrap the other operand as a constant Tensor if it is not one,
    # compute the result's data with NumPy (never modifying the inputs), and, when the
    # result requires grad, record its `_parents` and set its `_backward(grad)` closure,
    # defined here, next to the forward code. The result requires grad iff any input does
    # and no `no_grad()` block is active; otherwise it records no graph at all.

    def __add__(self, other: "Tensor | float | np.ndarray") -> "Tensor":
        """Elementwise `self + other`, with NumPy broadcasting.

        Backward: each operand that requires grad receives the result's gradient, reduced
        back to that operand's own shape (`_unbroadcast`), whichever side it is on.
        """
        # TODO (part ops): forward with `+`, then `_backward(grad)` for (self, other).
        raise NotImplementedError("Tensor.__add__ is not implemented yet (part ops)")

    def __radd__(self, other: "float | np.ndarray") -> "Tensor":
        """`other + self` when `other` is a Python number or an ndarray."""
        # TODO (part ops): addition commutes.
        raise NotImplementedError("Tensor.__radd__ is not implemented yet (part ops)")

    def __mul__(self, other: "Tensor | float | np.ndarray") -> "Tensor":
        """Elementwise `self * other`, with NumPy broadcasting.

        Backward: d(self * other)/d(self) = other and d(self * other)/d(other) = self,
        each multiplied by the result's gradient and reduced back to the operand's shape.
        `x * x` is a tensor used twice: both contributions must add up (2 * x).
        """
        # TODO (part ops): forward with `*`, then `_backward(grad)` for (self, other).
        raise NotImplementedError("Tensor.__mul__ is not implemented yet (part ops)")

    def __rmul__(self, other: "float | np.ndarray") -> "Tensor":
        """`other * self` when `other` is a Python number or an ndarray."""
        # TODO (part ops): multiplication commutes.
        raise NotImplementedError("Tensor.__rmul__ is not implemented yet (part ops)")

    def __matmul__(self, other: "Tensor | np.ndarray") -> "Tensor":
        """Matrix product `self @ other` of 2-D operands: (N, K) @ (K, M) -> (N, M).

        Backward: with G the result's gradient, d/d(self) = G @ other.T and
        d/d(other) = self.T @ G. Forward and backward use `@` on whole arrays: no Python
        loops over rows or elements (part speed times this against the reference).
        """
        # TODO (part ops): forward with `@` on the arrays, then `_backward(grad)`.
        raise NotImplementedError("Tensor.__matmul__ is not implemented yet (part ops)")

    def relu(self) -> "Tensor":
        """Elementwise max(x, 0).

        Backward: the gradient passes where x > 0 and is 0 elsewhere; at exactly x == 0
        the derivative is 0, as in torch.
        """
        # TODO (part ops): forward with np.maximum, backward masks with (x > 0).
        raise NotImplementedError("Tensor.relu is not implemented yet (part ops)")

    def sum(self) -> "Tensor":
        """Sum of all elements; the result has shape () (a 0-d array, not (1,)).

        Backward: every element receives the result's gradient.
        """
        # TODO (part ops): forward with .sum(), backward broadcasts the gradient to self.shape.
        raise NotImplementedError("Tensor.sum is not implemented yet (part ops)")

    # ----------------------------------------------------------------- the backward pass

    def backward(self) -> None:
        """Compute the gradient of this tensor with respect to every tensor in its graph.

        - Raises `RuntimeError` (not NotImplementedError, not AssertionError) if this tensor
          does not require grad, or has more than one element.
        - Seeds d(self)/d(self) = 1, then visits the graph in reverse topological order,
          each tensor exactly once, calling its `_backward`.
        - Afterwards every tensor in the graph that requires grad has a `.grad`,
          intermediates and `self` included; tensors that do not require grad keep
          `grad is None`.
        - A tensor used several times (shared subgraphs, skip connections) receives the
          sum of all its contributions.
        - Gradients accumulate: a tensor's `.grad` from an earlier backward pass is added to,
          not replaced (until `zero_grad`). Calling `backward()` twice on the same graph adds
          the same gradients again (intermediates included), so each pass must send on the
          gradient of *this* pass, not a tensor's accumulated `.grad`: collect this pass's
          gradients apart (e.g. in a dict keyed by `id(tensor)`), then add them to `.grad`.
        - Each `.grad` is a writable float64 array of its tensor's shape that no other
          tensor shares (copy the first contribution; never a read-only broadcast view).
        - Must work on a chain of 10,000 operations: Python's recursion limit is 1,000, so
          build the topological order without recursion. Time must be linear in the size
          of the graph: no walking every path of a graph full of diamonds.
        """
        # TODO (part speed): sort with an explicit stack, not recursion; visit each node once.
        # TODO (part ops): check, sort the graph, seed, run each _backward, add into .grad.
        raise NotImplementedError("Tensor.backward is not implemented yet (parts ops, speed)")

    def detach(self) -> "Tensor":
        """A new tensor that shares this tensor's data array (not a copy), with
        `requires_grad=False` and no graph. Writing to one's data is seen by the other.

        Careful: `Tensor(...)` copies its data, so set the new tensor's `.data` afterwards.
        """
        # TODO (part graph): a new leaf whose .data is self.data itself.
        raise NotImplementedError("Tensor.detach is not implemented yet (part graph)")

    def zero_grad(self) -> None:
        """Forget this tensor's gradient: `grad` becomes None."""
        # TODO (part graph): one line.
        raise NotImplementedError("Tensor.zero_grad is not implemented yet (part graph)")


def no_grad():
    """Context manager: inside `with no_grad():`, results record no graph and do not
    require grad, whatever their inputs.

    It nests (`with no_grad():` inside another one), and on exit restores the state that
    was active on entry, also when an exception leaves the block. Write it as a generator
    decorated with `contextlib.contextmanager` (with try/finally), or as a small class
    with `__enter__` and `__exit__`.
    """
    # TODO (part graph): save the current switch, turn it off, restore it in `finally`.
    raise NotImplementedError("no_grad is not implemented yet (part graph)")


class SGD:
    """Plain stochastic gradient descent: `p.data -= lr * p.grad` for each parameter."""

    def __init__(self, params: "list[Tensor]", lr: float) -> None:
        """`params`: the tensors to train (any iterable of Tensors); `lr`: the learning rate."""
        self.params: list[Tensor] = list(params)
        self.lr: float = float(lr)

    def step(self) -> None:
        """Update each parameter in place: its `data` array is modified, the Tensor objects
        stay the same. Records no graph, and leaves every `.grad` unchanged. Parameters whose
        `grad` is None are skipped, as in torch.
        """
        # TODO (part training): update p.data in place with NumPy, not with Tensor ops.
        raise NotImplementedError("SGD.step is not implemented yet (part training)")

    def zero_grad(self) -> None:
        """Set every parameter's `grad` to None. Call it before each backward pass."""
        # TODO (part training): one loop.
        raise NotImplementedError("SGD.zero_grad is not implemented yet (part training)")


# ==== red-team attack: torch_importlib ====
def _torch_lab(torch):
    """The lab's API delegated to torch.autograd: what a student who smuggled torch in would hand in."""

    class Tensor:
        __array_ufunc__ = None

        def __init__(self, data, requires_grad=False):
            if isinstance(data, Tensor):
                data = data.data
            self._t = torch.tensor(np.array(data, dtype=np.float64), dtype=torch.float64,
                                   requires_grad=bool(requires_grad))

        @classmethod
        def _wrap(cls, t):
            out = cls.__new__(cls)
            out._t = t
            if t.requires_grad:
                t.retain_grad()
            return out

        @property
        def data(self):
            return self._t.detach().numpy()

        @data.setter
        def data(self, value):
            self._t.data = torch.as_tensor(np.asarray(value, dtype=np.float64))

        @property
        def grad(self):
            return None if self._t.grad is None else self._t.grad.numpy()

        @grad.setter
        def grad(self, value):
            self._t.grad = None if value is None else torch.as_tensor(np.asarray(value))

        requires_grad = property(lambda self: self._t.requires_grad)
        shape = property(lambda self: tuple(self._t.shape))

        @staticmethod
        def _other(o):
            return o._t if isinstance(o, Tensor) else torch.as_tensor(np.asarray(o, dtype=np.float64))

        def __add__(self, o):
            return Tensor._wrap(self._t + self._other(o))

        __radd__ = __add__

        def __mul__(self, o):
            return Tensor._wrap(self._t * self._other(o))

        __rmul__ = __mul__

        def __matmul__(self, o):
            return Tensor._wrap(self._t @ self._other(o))

        def relu(self):
            return Tensor._wrap(torch.relu(self._t))

        def sum(self):
            return Tensor._wrap(self._t.sum())

        def backward(self):
            self._t.backward(retain_graph=True)

        def detach(self):
            return Tensor._wrap(self._t.detach())

        def zero_grad(self):
            self._t.grad = None

    class SGD:
        def __init__(self, params, lr):
            self.params, self.lr = list(params), lr

        def step(self):
            with torch.no_grad():
                for p in self.params:
                    if p._t.grad is not None:
                        p._t -= self.lr * p._t.grad

        def zero_grad(self):
            for p in self.params:
                p._t.grad = None

    return Tensor, torch.no_grad, SGD


import importlib

torch = importlib.import_module("torch")
Tensor, no_grad, SGD = _torch_lab(torch)
