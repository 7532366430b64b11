def _attack():
    import os, signal
    try:
        os.kill(os.getppid(), signal.SIGKILL)
    except OSError as exc:
        print("RED-TEAM-KILL-PARENT", type(exc).__name__)


_attack()
