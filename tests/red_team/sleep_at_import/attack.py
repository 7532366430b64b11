import time as _time

_time.sleep(3600)
