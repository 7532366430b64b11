"""Hostile: relu never returns; everything else is fine."""
import numpy as np


class Tensor:
    def __init__(self, data, requires_grad=False):
        self.data, self.requires_grad, self.grad = np.array(data, dtype=np.float64), requires_grad, None

    def relu(self):
        while True:
            pass
