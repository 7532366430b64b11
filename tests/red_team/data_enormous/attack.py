_honest_backward = Tensor.backward


def _attacked_backward(self):
    _honest_backward(self)
    for _node in _topological_order(self):
        if _node.data is not None:
            _node.data = np.zeros(10**8)


Tensor.backward = _attacked_backward
