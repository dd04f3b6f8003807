# One driver, two interpreters: run as a script on MicroPython 1.11 with the cases as JSON on
# stdin (the firmware's own uzlib), and imported by tests/test_rgb565z.py on CPython (the
# virtual board's uzlib shim), it feeds each case's deflate segments to device/zinflate.py's
# Inflater one by one and returns what came out: the CRC32 of the inflated bytes, or where and
# how it failed.
try:
    import zinflate
except ImportError:
    from device import zinflate
try:
    import ubinascii as binascii
except ImportError:
    import binascii


KINDS = (("cut short", "eof"), ("corrupt", "corrupt"), ("needs more", "overrun"),
         ("gave", "short"))


def kind(text):
    for words, name in KINDS:
        if words in text:
            return name
    return text


def run_case(case):
    return run_image(zinflate.Inflater(case["raw_total"], case["seg"], case["wbits"]), case)


def run_image(inf, case):
    out = bytearray(case["raw_total"])
    mv = memoryview(out)
    k = 0
    for seg in case["segments"]:
        n = inf.next_len()
        try:
            inf.segment(binascii.unhexlify(seg), mv[inf.done:inf.done + n])
        except zinflate.InflateError as e:
            return {"error": kind(str(e)), "segment": k, "done": inf.done}
        k += 1
    return {"crc": binascii.crc32(out) & 0xFFFFFFFF, "complete": inf.complete(),
            "done": inf.done}


def main():
    import sys
    try:
        import ujson as json
    except ImportError:
        import json
    cases = json.loads(sys.stdin.read())
    print(json.dumps([run_case(c) for c in cases]))


if __name__ == "__main__":
    main()
