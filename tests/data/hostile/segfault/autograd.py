"""Hostile: relu dereferences a null pointer through ctypes."""
import ctypes

import numpy as np


class Tensor:
    def __init__(self, data, requires_grad=False):
        self.data, self.requires_grad, self.grad = np.array(data, dtype=np.float64), requires_grad, None

    def relu(self):
        return ctypes.string_at(0)
