"""Helpers shared by the shim modules."""
import types


def new_module(name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module
