"""Compile board scripts the way MicroPython 1.11 would accept and run them.

CPython is more permissive than the firmware; the differences that bite device code in
practice are enforced here: f-strings and async/await do not compile, `bytes.hex()`,
`bytes.fromhex()` do not exist, and `int.from_bytes`/`int.to_bytes` take no keyword
arguments (byteorder is positional only).
"""
import ast
import functools

ATTR_HOOK = "__vboard_attr__"
_CHECKED = ("hex", "fromhex", "from_bytes", "to_bytes")
_BYTES_TYPES = (bytes, bytearray, memoryview)


class _Rewrite(ast.NodeTransformer):
    def visit_JoinedStr(self, node):
        raise SyntaxError("invalid syntax", (self.filename, node.lineno, node.col_offset, None))

    def _no_async(self, node):
        raise SyntaxError("invalid syntax", (self.filename, node.lineno, node.col_offset, None))

    visit_AsyncFunctionDef = visit_Await = visit_AsyncFor = visit_AsyncWith = _no_async

    def visit_Attribute(self, node):
        self.generic_visit(node)
        if node.attr in _CHECKED and isinstance(node.ctx, ast.Load):
            call = ast.Call(func=ast.Name(id=ATTR_HOOK, ctx=ast.Load()),
                            args=[node.value, ast.Str(s=node.attr)], keywords=[])
            return ast.copy_location(call, node)
        return node


def compile_source(source, filename, mode):
    """mode: 'exec' (files, raw REPL) or 'single' (friendly REPL line)."""
    tree = ast.parse(source, filename, mode)
    rewriter = _Rewrite()
    rewriter.filename = filename
    tree = ast.fix_missing_locations(rewriter.visit(tree))
    return compile(tree, filename, mode, dont_inherit=True)


def _positional_only(fn, *args, **kwargs):
    if kwargs:
        raise TypeError("function doesn't take keyword arguments")
    return fn(*args)


def attr_hook(obj, name):
    """Runtime side of the rewrite: attribute lookup with the firmware's omissions."""
    # board code's bytes/bytearray are the GC heap's counting stand-ins (gcheap.py)
    is_bytes = isinstance(obj, _BYTES_TYPES) or any(
        obj is t or getattr(obj, "real_type", None) is t for t in _BYTES_TYPES)
    if name in ("hex", "fromhex") and is_bytes:
        kind = obj.__name__ if isinstance(obj, type) else type(obj).__name__
        raise AttributeError("'%s' object has no attribute '%s'" % (kind, name))
    value = getattr(obj, name)
    if name in ("from_bytes", "to_bytes") and (obj is int or type(obj) is int):
        return functools.partial(_positional_only, value)
    return value
