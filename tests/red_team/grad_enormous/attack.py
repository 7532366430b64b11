_honest_backward = Tensor.backward


def _attacked_backward(self):
    _honest_backward(self)
    for _node in _topological_order(self):
        if _node.grad is not None:
            _node.grad = np.broadcast_to(np.float64(0.0), (10**8,))


Tensor.backward = _attacked_backward
