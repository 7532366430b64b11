"""Hostile: exits while it is imported."""
import sys

print("about to exit")
sys.exit("autograd.py refuses to be imported")
