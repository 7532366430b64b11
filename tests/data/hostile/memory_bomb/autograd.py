"""Hostile: relu allocates memory until something stops it."""
import numpy as np


class Tensor:
    def __init__(self, data, requires_grad=False):
        self.data, self.requires_grad, self.grad = np.array(data, dtype=np.float64), requires_grad, None

    def relu(self):
        hoard = []
        while True:
            hoard.append(np.ones(1 << 22))  # 32 MB at a time
