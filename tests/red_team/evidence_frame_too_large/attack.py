_honest_backward = Tensor.backward


def _attacked_backward(self):
    _honest_backward(self)
    for _node in _topological_order(self)[:3]:
        if _node.grad is not None:
            _node.grad = np.broadcast_to(np.float64(1.0), (3_999_999,))


Tensor.backward = _attacked_backward
