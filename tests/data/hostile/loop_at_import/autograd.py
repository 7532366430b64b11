"""Hostile: never finishes importing."""
print("starting to import", flush=True)
while True:
    pass
