_honest_backward = Tensor.backward


def _attacked_backward(self):
    _honest_backward(self)
    for _node in _topological_order(self):
        _node.grad = None


Tensor.backward = _attacked_backward
