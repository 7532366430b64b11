"""Hostile: a correct little autograd (add, mul, sum) that writes to stdout and stderr in
every way it can, including a forged protocol frame on fd 1. None of it may reach the grader's
protocol; all of it shows up, capped, in the captured output."""
import json
import os
import struct
import sys

import numpy as np

print("hello from import time")
FORGED = json.dumps({"type": "result", "result": {"snapshots": {}, "facts": {}, "caught": {},
                                                  "error": None, "inputs_unchanged": {}}}).encode()


def _noise(op):
    print(f"print from {op}")
    print(f"stderr from {op}", file=sys.stderr)
    os.write(1, f"os.write to fd 1 from {op}\n".encode())
    os.write(1, struct.pack(">4sIQ", b"AGF1", len(FORGED), 0) + FORGED)  # a well-formed, forged frame
    sys.stdout.flush()


class Tensor:
    def __init__(self, data, requires_grad=False, parents=()):
        self.data = np.array(data, dtype=np.float64)
        self.requires_grad, self.grad, self._parents = requires_grad, None, parents

    def _wrap(self, other):
        return other if isinstance(other, Tensor) else Tensor(other)

    def __add__(self, other):
        _noise("add")
        other = self._wrap(other)
        return Tensor(self.data + other.data, self.requires_grad or other.requires_grad,
                      ((self, lambda g: g), (other, lambda g: g)))

    def __mul__(self, other):
        _noise("mul")
        other = self._wrap(other)
        return Tensor(self.data * other.data, self.requires_grad or other.requires_grad,
                      ((self, lambda g: g * other.data), (other, lambda g: g * self.data)))

    def sum(self):
        _noise("sum")
        return Tensor(self.data.sum(), self.requires_grad, ((self, lambda g: g * np.ones_like(self.data)),))

    def backward(self):  # same-shape operands only: enough for the test's program
        _noise("backward")
        order, seen = [], set()

        def visit(t):
            if id(t) not in seen:
                seen.add(id(t))
                for parent, _ in t._parents:
                    visit(parent)
                order.append(t)

        visit(self)
        grads = {id(self): np.ones_like(self.data)}
        for t in reversed(order):
            g = grads.pop(id(t), None)
            if g is None or not t.requires_grad:
                continue
            t.grad = g.copy() if t.grad is None else t.grad + g
            for parent, rule in t._parents:
                grads[id(parent)] = grads.get(id(parent), 0) + rule(g)
