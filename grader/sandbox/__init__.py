"""Sandboxes: where untrusted submissions run. Kept import-light: the worker lives here too."""
