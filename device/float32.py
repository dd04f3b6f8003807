# The board's float arithmetic for interpreters whose floats are doubles (the host, the
# virtual board): MaixPy/CanMV build MicroPython with MICROPY_FLOAT_IMPL_FLOAT, so every
# float operation on the board rounds to IEEE binary32. decoders.py imports this module only
# where floats are doubles; the board itself never does. Why and what is exact:
# docs/design.md, "Decoders".
#
# round32(x): one operation's result as the board holds it. A +, -, *, / of two float32
#   values computed in double and rounded once to float32 is the correctly rounded float32
#   result (53 >= 2 * 24 + 2 bits), so host and board agree bit for bit.
# expf(x), powf(x, y): the C library's float functions, as MicroPython's math module calls
#   them (MICROPY_FLOAT_C_FUN); without a loadable libm, the double result rounded once.
# parse(text): the value MicroPython 1.11's float32 number parser (py/parsenum.c,
#   mp_parse_num_decimal, which ujson.loads also uses) gives a decimal text: it accumulates
#   the digits in float32 and scales by powf(10, n), so it is not always the nearest float32.
from array import array

_BUF = array("f", [0.0])


def round32(x):
    _BUF[0] = x
    return _BUF[0]


def _libm():
    try:
        import ctypes
        import ctypes.util
        lib = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        lib.expf.argtypes = [ctypes.c_float]
        lib.expf.restype = ctypes.c_float
        lib.powf.argtypes = [ctypes.c_float, ctypes.c_float]
        lib.powf.restype = ctypes.c_float
        return lib
    except (ImportError, OSError, AttributeError):
        return None


_LIBM = _libm()


def expf(x):
    if _LIBM is not None:
        return _LIBM.expf(x)
    import math
    return round32(math.exp(x))


def powf(x, y):
    if _LIBM is not None:
        return _LIBM.powf(x, y)
    return round32(float(x) ** y)


DEC_VAL_MAX = round32(1e20)
SMALL_NORMAL_VAL = round32(1e-37)
SMALL_NORMAL_EXP = -37
EXACT_POWER_OF_10 = 9


def parse(text):
    """float32 value of a decimal number text as mp_parse_num_decimal (ced340d) computes it."""
    s = text.strip().lower()
    neg = s.startswith("-")
    if s[:1] in "+-":
        s = s[1:]
    if s.startswith("inf"):
        v = float("inf")
    elif s.startswith("nan"):
        v = float("nan")
    else:
        v = 0.0
        part = "int"
        exp_neg = False
        exp_val = 0
        exp_extra = 0
        i = 0
        while i < len(s):
            ch = s[i]
            i += 1
            if "0" <= ch <= "9":
                dig = ord(ch) - 48
                if part == "exp":
                    exp_val = 10 * exp_val + dig
                elif v < DEC_VAL_MAX:
                    v = round32(round32(10 * v) + dig)
                    if part == "frac":
                        exp_extra -= 1
                elif part == "int":
                    exp_extra += 1
            elif part == "int" and ch == ".":
                part = "frac"
            elif part != "exp" and ch == "e":
                part = "exp"
                if s[i:i + 1] in ("+", "-"):
                    exp_neg = s[i] == "-"
                    i += 1
            elif ch == "_":
                continue
            else:
                raise ValueError("not a number: %r" % (text,))
        if exp_neg:
            exp_val = -exp_val
        exp_val += exp_extra
        if exp_val < SMALL_NORMAL_EXP:
            exp_val -= SMALL_NORMAL_EXP
            v = round32(v * SMALL_NORMAL_VAL)
        if -EXACT_POWER_OF_10 <= exp_val < 0:
            v = round32(v / powf(10, -exp_val))
        else:
            v = round32(v * powf(10, exp_val))
    return -v if neg else v


def board_float(value):
    """The float32 the board holds for a number written to its JSON config (json.dumps text)."""
    if isinstance(value, int):
        return round32(float(value))
    return parse(repr(float(value)))
