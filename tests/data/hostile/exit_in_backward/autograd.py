"""Hostile: backward kills the process outright (no exception, no cleanup)."""
import os

import numpy as np


class Tensor:
    def __init__(self, data, requires_grad=False):
        self.data, self.requires_grad, self.grad = np.array(data, dtype=np.float64), requires_grad, None

    def backward(self):
        os._exit(0)
