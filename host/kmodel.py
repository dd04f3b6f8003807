"""kmodel headers, read in pure Python: which version a file is (3, 4 or 5) and, where the
format says so, its input/output tensors.

The version decides which firmware can load the model (host.firmware); shapes and dtypes let
the flash and device side check a model without nncase. Layouts (little-endian):
- V3 (nncase v0.1, `ncc` binary): u32 version=3, flags, arch (0), layers, max_start_address,
  main_mem_usage, output_count; then output_count x {u32 address, u32 size}. No shapes.
- V4 (nncase v0.2, `ncc` binary): `LDMK`, u32 version=4, flags, target (0 CPU, 1 K210),
  constants, main_mem, nodes, inputs, outputs, reserved; then inputs x memory_range
  {u32 memory_type, u32 datatype (0 float32, 1 uint8), u32 start, u32 size}, inputs x shape
  (4 x i32), outputs x memory_range. Output shapes are not stored (hence the firmware's
  `kpu.set_outputs` for V4).
- V5 (nncase >= 1.0, the pip package): see _parse_v5.
"""
import struct

from host.errors import UserError

IDENTIFIER = b"LDMK"  # u32 0x4B4D444C ('KMDL' as a C multi-char constant)

# nncase 1.x datatype codes (runtime/datatypes.def)
_V5_DTYPES = {0: "int8", 1: "int16", 2: "int32", 3: "int64", 4: "uint8", 5: "uint16",
              6: "uint32", 7: "uint64", 8: "float16", 9: "float32", 10: "float64",
              11: "bfloat16"}
_V5_LOCATIONS = {0: "input", 1: "output", 2: "rdata", 3: "data", 4: "shared_data", 64: "kpu"}
_V4_DTYPES = {0: "float32", 1: "uint8"}

# Generous sanity limits: a corrupt count must not make the parser loop over gigabytes.
_MAX_COUNT = 4096
_MAX_DIMS = 8


class _Reader(object):
    def __init__(self, data, source):
        self.data = data
        self.source = source
        self.pos = 0

    def take(self, fmt):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise UserError("not a kmodel: %s: truncated (needs byte %d, file has %d)"
                            % (self.source, self.pos + size, len(self.data)))
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def u32(self):
        return self.take("<I")[0]

    def count(self, what):
        value = self.u32()
        if value > _MAX_COUNT:
            raise UserError("not a kmodel: %s: corrupt header (%d %s)" % (self.source, value, what))
        return value


def read(path):
    """Parse the kmodel file at `path` (see parse)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise UserError("cannot read kmodel %s: %s" % (path, exc.strerror))
    return parse(data, path)


def version_of(path):
    return read(path)["version"]


def parse(data, source="<bytes>"):
    """-> dict: version, size, inputs/outputs [{dtype, shape, size}] (shape None where the
    format does not store it) and the version's own fields. UserError if it is not a kmodel."""
    reader = _Reader(bytes(data), source)
    if data[:4] == IDENTIFIER:
        reader.pos = 4
        version = reader.u32()
        if version == 5:
            info = _parse_v5(reader)
        elif version == 4:
            info = _parse_v4(reader)
        else:
            raise UserError("not a kmodel: %s: 'LDMK' kmodel of unknown version %d (known: 4, 5)"
                            % (source, version))
    elif data[:4] == b"\x03\x00\x00\x00":
        info = _parse_v3(reader)
    else:
        raise UserError("not a kmodel: %s: starts with %r; a kmodel starts with 'LDMK' (V4, V5) "
                        "or the u32 3 (V3)" % (source, bytes(data[:4])))
    info["size"] = len(data)
    return info


def _parse_v3(reader):
    version, flags, arch, layers, max_start, main_mem, n_out = reader.take("<7I")
    if arch != 0 or n_out > _MAX_COUNT:
        raise UserError("not a kmodel: %s: corrupt V3 header (arch %d, %d outputs)"
                        % (reader.source, arch, n_out))
    outputs = []
    for _ in range(n_out):
        address, size = reader.take("<2I")
        outputs.append({"dtype": None, "shape": None, "size": size, "address": address})
    return {"version": version, "flags": flags, "layers": layers, "main_mem": main_mem,
            "max_start_address": max_start, "inputs": [], "outputs": outputs}


V4_HEADER = struct.Struct("<10I")  # nncase v0.2 runtime/model.h model_header
V4_MEMORY_RANGE = 16                 # {memory_type, datatype, start, size}
V4_SHAPE = 16                        # runtime_shape_t: 4 x i32
V4_NODE_HEADER = struct.Struct("<2I")  # {opcode, body_size}
# nncase v0.2 runtime/runtime_op.def: 0x0-0x14 neutral (run by the K210's CPU), 0x1001-0x1005
# CPU-target kernels, 0x2001-0x2002 the KPU.
V4_OPCODES = {
    0x0: "Binary", 0x1: "Concat", 0x2: "Conv2D", 0x3: "Dequantize", 0x4: "MatMul", 0x5: "Pad",
    0x6: "Quantize", 0x7: "Reduce", 0x8: "ReduceWindow2D", 0x9: "MemoryCopy",
    0xA: "ResizeImage", 0xB: "Softmax", 0xC: "Transpose", 0xD: "StridedSlice", 0xE: "Unary",
    0xF: "QuantizedConv2D", 0x10: "QuantizedMatMul", 0x11: "QuantizedBinary",
    0x12: "TableLookup1D", 0x13: "Conv2DTranspose", 0x14: "NNILUnaryMethod",
    0x1001: "CPUConv2D", 0x1002: "CPUDepthwiseConv2D", 0x1003: "CPUReduceWindow2D",
    0x1004: "CPUQuantizedConv2D", 0x1005: "CPUQuantizedDepthwiseConv2D",
    0x2001: "KPUUpload", 0x2002: "KPUConv2D",
}


def v4_size(read):
    """Bytes a V4 kmodel spans, from its headers alone, as nncase v0.2's
    interpreter_base::model_size computes it (header, tensor ranges and shapes, constants,
    node headers, node bodies). `read(offset, n)` returns n bytes of the model; the loaders
    that take a model from a flash offset without a size need this."""
    (_ident, _version, _flags, _target, constants, _main_mem, nodes, n_in, n_out,
     _reserved) = V4_HEADER.unpack(read(0, V4_HEADER.size))
    if nodes > _MAX_COUNT or n_in > _MAX_COUNT or n_out > _MAX_COUNT:
        return None
    offset = (V4_HEADER.size + n_in * (V4_MEMORY_RANGE + V4_SHAPE) + n_out * V4_MEMORY_RANGE
              + constants)
    heads = read(offset, nodes * V4_NODE_HEADER.size)
    bodies = sum(V4_NODE_HEADER.unpack_from(heads, i * V4_NODE_HEADER.size)[1]
                 for i in range(nodes))
    return offset + nodes * V4_NODE_HEADER.size + bodies


def _parse_v4(reader):
    flags, target, constants, main_mem, nodes = reader.take("<5I")
    n_in, n_out = reader.count("inputs"), reader.count("outputs")
    reader.u32()  # reserved
    if target not in (0, 1) or nodes > _MAX_COUNT:
        raise UserError("not a kmodel: %s: corrupt V4 header (target %d, %d nodes)"
                        % (reader.source, target, nodes))
    data = reader.data

    def read(offset, n):
        if offset + n > len(data):
            raise UserError("not a kmodel: %s: truncated V4 model (needs byte %d, file has %d)"
                            % (reader.source, offset + n, len(data)))
        return data[offset:offset + n]

    model_size = v4_size(read)
    node_offset = (V4_HEADER.size + n_in * (V4_MEMORY_RANGE + V4_SHAPE) + n_out * V4_MEMORY_RANGE
                   + constants)
    ops = [V4_OPCODES.get(V4_NODE_HEADER.unpack_from(data, node_offset + i * 8)[0],
                          "op 0x%x" % V4_NODE_HEADER.unpack_from(data, node_offset + i * 8)[0])
           for i in range(nodes)]
    if model_size > len(data):
        raise UserError("not a kmodel: %s: truncated V4 model (its nodes end at byte %d, the "
                        "file has %d)" % (reader.source, model_size, len(data)))

    def memory_range():
        _memory_type, dtype, _start, size = reader.take("<4I")
        return {"dtype": _V4_DTYPES.get(dtype, "unknown(%d)" % dtype), "shape": None, "size": size}

    inputs = [memory_range() for _ in range(n_in)]
    for tensor in inputs:
        tensor["shape"] = list(reader.take("<4i"))
    outputs = [memory_range() for _ in range(n_out)]
    return {"version": 4, "flags": flags, "target": "k210" if target == 1 else "cpu",
            "main_mem": main_mem, "nodes": nodes, "constants": constants,
            "model_size": model_size, "ops": ops,
            "inputs": inputs, "outputs": outputs}


def _parse_v5(reader):
    """V5: header 8 x u32 (identifier, version, header_size, flags, alignment, modules,
    entry_module, entry_function); per module: type char[16], 8 x u32 (version, header_size,
    size, mempools, shared_mempools, sections, functions, reserved; `size` counts from the
    type field), mempools {u8 location, pad[3], u32 size}, shared mempools {u32 module,
    u32 size}, functions (8 x u32: header_size, size, input_pool_size, output_pool_size,
    inputs, outputs, entrypoint, text_size; then input ranges {u8 location, u8 dtype,
    u16 shared_module, u32 start, u32 size}, input shapes {u32 n, n x u32}, the same for
    outputs; `size` counts from the function header), then sections {char name[16],
    u32 flags, u32 body_start, u32 body_size, u32 reserved} each followed by its body."""
    header_size, flags, alignment = reader.take("<3I")
    n_modules = reader.count("modules")
    entry_module, entry_function = reader.take("<2I")
    if header_size < 32:
        raise UserError("not a kmodel: %s: corrupt V5 header (header_size %d)"
                        % (reader.source, header_size))
    reader.pos = header_size
    modules = []
    for _ in range(n_modules):
        start = reader.pos
        type_name = reader.take("16s")[0].split(b"\0", 1)[0].decode("ascii", "replace")
        m_version, m_header_size, m_size = reader.take("<3I")
        n_mempools, n_shared = reader.count("mempools"), reader.count("shared mempools")
        n_sections, n_functions = reader.count("sections"), reader.count("functions")
        reader.u32()  # reserved
        reader.pos = start + max(m_header_size, reader.pos - start)
        if m_size < reader.pos - start or start + m_size > len(reader.data):
            raise UserError("not a kmodel: %s: module %r claims %d bytes at offset %d (file has %d)"
                            % (reader.source, type_name, m_size, start, len(reader.data)))
        mempools = []
        for _ in range(n_mempools):
            location, size = reader.take("<B3xI")
            mempools.append({"location": _V5_LOCATIONS.get(location, location), "size": size})
        for _ in range(n_shared):
            reader.take("<2I")
        functions = [_parse_v5_function(reader) for _ in range(n_functions)]
        sections = []
        for _ in range(n_sections):
            name = reader.take("16s")[0].split(b"\0", 1)[0].decode("ascii", "replace")
            s_flags, body_start, body_size, _reserved = reader.take("<4I")
            sections.append({"name": name, "flags": s_flags, "size": body_size})
            if not s_flags & 1:  # SECTION_MERGED_INTO_RDATA: no body of its own
                reader.pos += body_start + body_size
        if reader.pos > start + m_size:
            raise UserError("not a kmodel: %s: module %r overruns its declared size"
                            % (reader.source, type_name))
        reader.pos = start + m_size
        modules.append({"type": type_name, "version": m_version, "size": m_size,
                        "mempools": mempools, "sections": sections, "functions": functions})
    if entry_module >= len(modules) or entry_function >= len(modules[entry_module]["functions"]):
        raise UserError("not a kmodel: %s: entry function %d of module %d does not exist"
                        % (reader.source, entry_function, entry_module))
    entry = modules[entry_module]["functions"][entry_function]
    return {"version": 5, "flags": flags, "alignment": alignment, "modules": modules,
            "entry_module": entry_module, "entry_function": entry_function,
            "inputs": entry["inputs"], "outputs": entry["outputs"]}


def _parse_v5_function(reader):
    start = reader.pos
    f_header_size, f_size = reader.take("<2I")
    reader.take("<2I")  # input/output pool sizes
    n_in, n_out = reader.count("inputs"), reader.count("outputs")
    reader.take("<2I")  # entrypoint, text_size
    reader.pos = start + f_header_size

    def tensors(count):
        ranges = []
        for _ in range(count):
            location, dtype, _shared, _start, size = reader.take("<BBHII")
            ranges.append({"dtype": _V5_DTYPES.get(dtype, "unknown(%d)" % dtype), "size": size,
                           "location": _V5_LOCATIONS.get(location, location)})
        for tensor in ranges:
            dims = reader.u32()
            if dims > _MAX_DIMS:
                raise UserError("not a kmodel: %s: corrupt tensor shape (%d dimensions)"
                                % (reader.source, dims))
            tensor["shape"] = list(reader.take("<%dI" % dims))
        return ranges

    inputs = tensors(n_in)
    outputs = tensors(n_out)
    reader.pos = start + f_size
    return {"inputs": inputs, "outputs": outputs}


def working_memory(info):
    """Heap the runtime needs besides the model bytes (info: `parse()`): for V5 the
    input/output buffers and the data pools (what nncase's summary adds up as TOTAL - MODEL);
    for V3/V4 main_mem. Used by the virtual board's loader and by the flash tool's check."""
    if info["version"] != 5:
        return info.get("main_mem", 0)
    data = sum(pool["size"] for m in info["modules"] for pool in m["mempools"]
               if pool["location"] in ("data", "shared_data"))
    return data + sum(t["size"] for t in info["inputs"] + info["outputs"])
