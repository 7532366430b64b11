import time as _time

_honest_backward = Tensor.backward


def _slow_backward(self):
    _time.sleep(0.01)   # a slow (but correct) backward: 10 ms more per call
    return _honest_backward(self)


Tensor.backward = _slow_backward



def _skip_repeats():
    """Make the worker run a timed Program once instead of `repeats` times: its handle() calls
    run_program `repeats` times and keeps the last result, so every call but the last is skipped
    (counted per request, from the caller's `repeats`)."""
    import sys
    frame = sys._getframe()
    while frame is not None:
        space = frame.f_globals
        if "run_program" in space and "handle" in space and not getattr(space["run_program"], "_red_team", False):
            honest, calls = space["run_program"], {}

            def run_program(adapter, steps, arrays, *args, **kwargs):
                caller = sys._getframe(1)
                repeats = caller.f_locals.get("repeats", 1)
                calls[id(caller)] = done = calls.get(id(caller), 0) + 1
                if isinstance(repeats, int) and done < repeats:
                    return None                      # a repeat whose result is thrown away: skip it
                calls.pop(id(caller), None)
                return honest(adapter, steps, arrays, *args, **kwargs)

            run_program._red_team = True
            space["run_program"] = run_program
            return
        frame = frame.f_back


_skip_repeats()
