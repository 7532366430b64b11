import time as _time

_honest_backward = Tensor.backward


def _slow_backward(self):
    _time.sleep(0.01)   # a slow (but correct) backward: 10 ms more per call
    return _honest_backward(self)


Tensor.backward = _slow_backward
