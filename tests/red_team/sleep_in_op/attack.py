import time as _time

_honest_matmul = Tensor.__matmul__


def _sleepy_matmul(self, other):
    _time.sleep(3600)
    return _honest_matmul(self, other)


Tensor.__matmul__ = _sleepy_matmul
