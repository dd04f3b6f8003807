# One driver, two interpreters: run as a script on MicroPython 1.11 (float32) with the cases as
# JSON on stdin, and imported by tests/test_mpy_protocol.py on CPython, it runs
# device/protocol.py on each case and returns a JSON-able result. Bytes travel as hex, floats
# as their float32 bytes (hex), exceptions as their type name.
try:
    import protocol as P
    import protocol_host as PH
except ImportError:
    from device import protocol as P
    from device import protocol_host as PH
try:
    import ubinascii as binascii
except ImportError:
    import binascii
try:
    import ustruct as struct
except ImportError:
    import struct


def unhex(text):
    return binascii.unhexlify(text)


def tohex(data):
    return binascii.hexlify(bytes(data)).decode()


def arg(v):
    """JSON case argument -> value: {"f32": hex} a float, {"f32s": hex} a list of floats,
    {"hex": hex} bytes."""
    if isinstance(v, dict):
        if "f32" in v:
            return struct.unpack("<f", unhex(v["f32"]))[0]
        if "f32s" in v:
            raw = unhex(v["f32s"])
            return list(struct.unpack("<%df" % (len(raw) // 4), raw))
        if "hex" in v:
            return unhex(v["hex"])
        return dict((k, arg(x)) for k, x in v.items())
    if isinstance(v, list):
        return [arg(x) for x in v]
    return v


def out(v):
    """Result value -> JSON: floats as float32 hex, buffers as hex, tuples as lists."""
    if isinstance(v, float):
        return {"f32": tohex(struct.pack("<f", v))}
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"hex": tohex(v)}
    if isinstance(v, (list, tuple)):
        return [out(x) for x in v]
    if isinstance(v, dict):
        return dict((k, out(x)) for k, x in v.items())
    return v


def parse(case):
    """The board's receive path (device/server.py Server.poll): bytes arrive in chunks into
    parser.free() and commit(); after each chunk the frames are drained; a chunk size 0 is a
    line that stalls (the head candidate is stale: rescan()). At the end the line stalls until
    nothing more comes out."""
    p = P.Parser(max_payload=case["max_payload"])
    data = unhex(case["stream"])
    frames = []
    pos = 0

    def drain():
        while True:
            f = p.next()
            if f is None:
                return
            frames.append([f[0], f[1], tohex(f[2]), p.version])

    for n in case["chunks"] + [len(data)]:
        if n == 0:
            if p.want:
                p.rescan()
        elif case["path"] == "commit":
            while n > 0 and pos < len(data):
                room = p.free()
                k = min(n, len(room), len(data) - pos)
                room[0:k] = data[pos:pos + k]
                p.commit(k)
                pos += k
                n -= k
                drain()
        else:
            k = p.feed(memoryview(data)[pos:pos + n])
            pos += k
        drain()
    for _ in range(len(data) + 1):
        if not p.rescan():
            break
        drain()
    return {"frames": frames, "stats": p.stats(), "dropped": p.dropped()}


def one(case):
    op = case["op"]
    try:
        if op == "encode":
            return {"hex": tohex(P.encode(case["type"], case["seq"], unhex(case["payload"])))}
        if op == "parse":
            return parse(case)
        # the board's functions and the host's half, each run on both interpreters
        fn = getattr(P, case["fn"], None) or getattr(PH, case["fn"])
        args = arg(case["args"])
        r = fn(*args)
        if case["fn"] == "pack_result_parts":
            r = b"".join([bytes(x) for x in r])
        return {"value": out(r)}
    except Exception as e:
        return {"error": type(e).__name__}


if __name__ == "__main__":
    import sys
    try:
        import ujson as json
    except ImportError:
        import json
    cases = json.loads(sys.stdin.read())
    print(json.dumps([one(c) for c in cases]))
