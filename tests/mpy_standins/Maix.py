# MaixPy's `Maix` module: only what device/ uses. utils.heap_free() reports the C heap
# (Maix/maix_utils.c, xPortGetFreeHeapSize), not the GC heap: a fixed figure here.
class utils:
    @staticmethod
    def heap_free():
        return 1 << 20
