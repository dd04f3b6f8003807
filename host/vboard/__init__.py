"""The virtual K210: runs the unmodified device/ scripts under CPython with shims of the
MaixPy/CanMV firmware modules, on a pseudo-terminal a host opens with pyserial.

Own process only (`python -m host.vboard`, or host.vboard.launcher.start_board): its KPU is
nncase's Simulator, run in a worker process of its own (host/vboard/kpu_worker.py); neither
imports TensorFlow.
"""
