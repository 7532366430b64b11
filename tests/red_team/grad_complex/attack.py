_honest_backward = Tensor.backward


def _attacked_backward(self):
    _honest_backward(self)
    for _node in _topological_order(self):
        if _node.grad is not None:
            _node.grad = _node.grad.astype(np.complex128)


Tensor.backward = _attacked_backward
