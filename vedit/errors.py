"""Every error vedit raises on purpose.

Hierarchy (catch the base that fits)::

    VeditError                      anything vedit reports as a one-line message
    ├── RegistryError               the tool registry (or a snapshot of it) is malformed
    │   └── SchemaSubsetError       a tool's JSON Schema is outside the subset vedit compiles (path + reason)
    ├── ToolCallError               model text that is not a valid call of a tool
    ├── DatasetError                a JSONL data file has bad rows (line numbers inside)
    ├── ModelDirError               a model / export directory is missing, corrupt or mismatched
    │   └── ExportIntegrityError    an export's file differs from the sha256 its manifest records
    ├── OutputError                 an output file or directory cannot be written (exists, disk full, ...)
    ├── ExportError                 an export failed (validation, unsupported model, ...)
    │   └── ValidationError         exported model disagrees with its PyTorch original
    ├── GrammarError                the output grammar cannot be built or reached by a tokenizer
    ├── TritonRepoError             a Triton repository cannot be built or served
    ├── MissingExtraError           a command needs an extra that is not installed (pip install 'vedit[...]')
    ├── ProviderError               a requested onnxruntime execution provider (CUDA) is not active
    ├── PeerError                   a peer engine (benchmark comparison) cannot be installed or its worker failed
    ├── RenderError                 a photo cannot be read or an answer cannot be rendered on it
    └── ClientError                 talking to a server failed
        ├── ServerUnavailableError  nothing answers at the URL (after bounded retries)
        └── ServerResponseError     the server answered with an error

The CLI catches ``VeditError`` once, prints ``error: <message>`` on one line and exits 1.
"""

from __future__ import annotations


class VeditError(Exception):
    """Base class: the message must tell the user what to do next."""


class RegistryError(VeditError):
    pass


class SchemaSubsetError(RegistryError):
    """A tool's JSON Schema uses something outside the subset vedit compiles exactly."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason} (see docs/byo-student.md, 'The schema subset')")
        self.path = path
        self.reason = reason


class ToolCallError(VeditError, ValueError):
    """Raised by the parser; ``tool`` names the tool and ``reason`` is the precise cause."""

    def __init__(self, tool: str, reason: str):
        super().__init__(f"{tool}: {reason}")
        self.tool = tool
        self.reason = reason


class DatasetError(VeditError):
    def __init__(self, path: str, problems: list[tuple[int, str]]):
        shown = "; ".join(f"line {n}: {msg}" for n, msg in problems[:5])
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"{path}: {len(problems)} bad row(s): {shown}{more}")
        self.path = path
        self.problems = problems


class ModelDirError(VeditError):
    pass


class ExportIntegrityError(ModelDirError):
    """A file of an export is not the one the exporter wrote (or the manifest records no hashes)."""


class OutputError(VeditError):
    pass


class ExportError(VeditError):
    pass


class ValidationError(ExportError):
    pass


class GrammarError(VeditError):
    pass


class TritonRepoError(VeditError):
    pass


class ClientError(VeditError):
    pass


class ServerUnavailableError(ClientError):
    pass


class ServerResponseError(ClientError):
    pass


class MissingExtraError(VeditError):
    """A command needs an optional extra (``pip install 'vedit[...]'``) that is not installed."""


class ProviderError(VeditError):
    """onnxruntime did not start a requested accelerator (it would silently run on CPU)."""


class PeerError(VeditError):
    """A peer engine the benchmark compares with: its environment cannot be built, or its worker died or hung."""


class SettingError(VeditError):
    """No setting of an engine could run on this host, or all answered differently from its default."""


class RenderError(VeditError):
    """A photo cannot be read (not an image, too large) or a tool call cannot be rendered on it."""


class WebBuildError(VeditError):
    """A static site for the browser cannot be built (unsupported export, web runtime not built)."""
