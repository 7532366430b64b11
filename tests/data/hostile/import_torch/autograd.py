"""Hostile: removes every import hook it can find, then imports torch."""
import sys

sys.meta_path.clear()
import torch  # noqa: E402,F401
