"""k210-deploy host side: freeze, convert, flash and evaluate TF1 models on the Kendryte K210.

The user-facing scripts (`convert.py`, `flash.py`, `serial_eval.py`) are thin CLIs over the
small modules of this package. Code shared with the board lives in `device/` (MicroPython
dialect) and is imported from there, so host and board cannot drift apart.
"""
