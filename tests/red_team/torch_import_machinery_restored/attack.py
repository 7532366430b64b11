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


def _smuggle_torch():
    """Undo every guard the worker installs, widen sys.path to wherever torch might live, import it."""
    import builtins, glob, importlib, importlib.machinery, os, sys
    builtins.__import__ = importlib.__import__
    sys.meta_path[:] = [importlib.machinery.BuiltinImporter, importlib.machinery.FrozenImporter,
                        importlib.machinery.PathFinder]
    stdlib = os.path.dirname(os.__file__)
    numpy_home = os.path.dirname(os.path.dirname(os.path.realpath(np.__file__)))
    guesses = [numpy_home, os.path.join(stdlib, "site-packages"), os.path.join(stdlib, "dist-packages"),
               "/usr/lib/python3/dist-packages"]
    for pattern in ("/usr/local/lib/python3*/*-packages", "/usr/lib/python3*/*-packages",
                    "/root/.pyenv/versions/*/lib/python3*/site-packages", "/opt/*/lib/python3*/site-packages",
                    "/home/*/.local/lib/python3*/site-packages", "/root/.local/lib/python3*/site-packages"):
        guesses += glob.glob(pattern)
    sys.path += [g for g in guesses if g not in sys.path]
    importlib.invalidate_caches()
    return importlib.import_module("torch")


torch = _smuggle_torch()
Tensor, no_grad, SGD = _torch_lab(torch)
