# Runs on MicroPython 1.11 (float32): device/decoders.py on a batch of cases from stdin
# (tests/mpy_harness.py). Tensors arrive as float32 bytes (hex), params as JSON text as the
# board's config.json carries them. Out: one JSON line, per case the boxes as '<5fH' hex (the
# segment mask as hex) or the exception's type name.
import sys
import ujson
import ustruct
import ubinascii
import decoders


def boxes_hex(boxes):
    out = bytearray()
    for b in boxes:
        out += ustruct.pack("<5fH", b[0], b[1], b[2], b[3], b[4], b[5])
    return ubinascii.hexlify(out).decode()


def one(case):
    try:
        if case["op"] == "near":
            vals = ustruct.unpack("<f", ubinascii.unhexlify(case["score"]))
            return {"near": decoders.near_threshold(vals[0], case["threshold"], case["margin"])}
        raw = ubinascii.unhexlify(case["data"])
        data = list(ustruct.unpack("<%df" % (len(raw) // 4), raw))
        if case["op"] == "mask":
            mask = decoders.segment_mask(data, case["shape"], case["params"])
            return {"mask": ubinascii.hexlify(mask).decode()}
        return {"boxes": boxes_hex(decoders.decode(case["kind"], data, case["shape"],
                                                   case["params"]))}
    except Exception as e:
        return {"error": type(e).__name__}


cases = ujson.loads(sys.stdin.read())
print(ujson.dumps([one(c) for c in cases]))
