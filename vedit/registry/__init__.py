"""The tool registry: the single source of truth for tools, parameters, ranges, presets and prompts.

Everything downstream (dataset checks, metrics, the decoding grammar, Triton config, client types)
is derived from a :class:`Registry`; nothing else spells out a parameter name or a range.
"""

from vedit.registry.model import Param, Registry, Tool, default_registry, load_registry, registry_from_dict
from vedit.registry.calls import ToolCall, parse_call, call_from_value

__all__ = [
    "Param",
    "Registry",
    "Tool",
    "ToolCall",
    "call_from_value",
    "default_registry",
    "load_registry",
    "parse_call",
    "registry_from_dict",
]
