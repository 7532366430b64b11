def _fill(directory, files=8, chunk=1 << 20, per_file=256):
    """Write 1 MB chunks into several big files until the file system or the size limit says no."""
    import os
    written = 0
    for i in range(files):
        try:
            with open(os.path.join(directory, f"red-team-fill-{i}.bin"), "wb") as f:
                for _ in range(per_file):
                    f.write(b"\0" * chunk)
                    written += chunk
        except OSError:
            pass
    return written


_filled = _fill("/tmp")
try:   # /tmp is full now: the student's own prints may fail, which is not what this case is about
    print("RED-TEAM-FILLED", _filled, "bytes of /tmp")
except OSError:
    pass
