"""Hostile: relu prints 1 MB; sum prints forever."""
import numpy as np


class Tensor:
    def __init__(self, data, requires_grad=False):
        self.data, self.requires_grad, self.grad = np.array(data, dtype=np.float64), requires_grad, None

    def relu(self):
        for _ in range(1024):
            print("x" * 1023)
        return Tensor(np.maximum(self.data, 0), self.requires_grad)

    def sum(self):
        while True:
            print("y" * 4095)
