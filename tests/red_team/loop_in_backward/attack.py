_honest_backward = Tensor.backward


def _attacked_backward(self):
    while True:
        pass
    return _honest_backward(self)


Tensor.backward = _attacked_backward
