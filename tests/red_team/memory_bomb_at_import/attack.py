_hoard = []
while True:
    _hoard.append(b"x" * (64 << 20))   # written, so resident: 64 MB at a time, without end
