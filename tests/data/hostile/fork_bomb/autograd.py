"""Hostile (bounded): relu forks as many sleeping children as it can, one of them in a new
session (as a daemon would), then reports how many forks succeeded."""
import os
import time

import numpy as np


def _child(escape):
    if escape:
        os.setsid()
    time.sleep(60)
    os._exit(0)


class Tensor:
    def __init__(self, data, requires_grad=False):
        self.data, self.requires_grad, self.grad = np.array(data, dtype=np.float64), requires_grad, None

    def relu(self):
        forked = 0
        for i in range(200):  # bounded: the test must stay safe without the limit too
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                _child(escape=i == 0)
            forked += 1
        raise RuntimeError(f"forked {forked} children")
