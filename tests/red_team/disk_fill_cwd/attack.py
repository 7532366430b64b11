def _fill(directory, chunk=1 << 20, total=256):
    import os
    written = 0
    try:
        with open(os.path.join(directory, "red-team-fill.bin"), "wb") as f:
            for _ in range(total):
                f.write(b"\0" * chunk)
                written += chunk
    except OSError as exc:
        return f"{written} bytes, then {type(exc).__name__}"
    return f"{written} bytes"


import os as _os

for _where in (_os.getcwd(), _os.path.dirname(_os.path.abspath(__file__)), _os.path.expanduser("~"),
               "/var/tmp", "/dev/shm", "/opt/grader", "/"):
    _result = _fill(_where)
    try:
        print("RED-TEAM-FILL", _where, _result)
    except OSError:
        pass
