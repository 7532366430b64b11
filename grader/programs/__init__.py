"""Tensor Programs: written once by a test, run on torch and on the lab API, rendered as Python.

Kept import-light (stdlib + NumPy at import time): the interpreter and the op table run inside the
sandbox worker. torch is imported only by ``torch_oracle``.
"""
