def _fork_until_refused():
    """Children that sleep (named rt-forkbomb, so the host can look for survivors) until fork fails."""
    import os, time
    for forked in range(10_000):
        try:
            pid = os.fork()
        except OSError:
            print("RED-TEAM-FORKED", forked)
            return
        if pid == 0:
            try:
                with open("/proc/self/comm", "w") as comm:
                    comm.write("rt-forkbomb")
            except OSError:
                pass
            time.sleep(3600)
            os._exit(0)


_fork_until_refused()
