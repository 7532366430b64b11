_honest_backward = Tensor.backward


def _attacked_backward(self):
    _honest_backward(self)
    for _node in _topological_order(self):
        if _node.grad is not None:
            _node.grad = "the gradient"


Tensor.backward = _attacked_backward
