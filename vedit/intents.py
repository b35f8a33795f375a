"""What counts as an answerable intent: one rule for the Triton model, the remote client and the
in-process client, so a request gets the same answer (or the same refusal) wherever it goes.

An intent is a non-empty (not only whitespace) UTF-8 text of at most ``max_bytes`` bytes. Real
intents are a few words ("golden hour", "Charlie Chaplin"); the model truncates anything beyond its
token limit anyway, so kilobytes are a client bug or abuse, refused before they cost model time.
(:class:`vedit.decoding.Predictor` itself, the library, answers anything: empty intents get valid
calls, long ones are cut at the prompt limit; the clients apply this rule in front of it.)
"""

from __future__ import annotations

#: Default limit per intent, in UTF-8 bytes (a served model's limit is in its config.pbtxt).
MAX_INTENT_BYTES = 1024
#: The looks the paper's users type, shown by the main job, the GPU check and the profile
SAMPLE_INTENTS = ("golden hour", "Morocco", "welding mask", "cold tone", "😈")


def intent_problem(intent: object, max_bytes: int | None = MAX_INTENT_BYTES) -> str | None:
    """Why ``intent`` (str, or UTF-8 bytes) cannot be answered, or ``None`` when it can."""
    if isinstance(intent, (bytes, bytearray)):
        if max_bytes is not None and len(intent) > max_bytes:
            return f"{len(intent)} bytes, over the limit of {max_bytes} bytes per intent"
        try:
            intent = bytes(intent).decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"not valid UTF-8 (byte {exc.start})"
    if not isinstance(intent, str):
        return f"intents are str, got {type(intent).__name__}"
    size = len(intent.encode("utf-8", "surrogatepass"))
    if max_bytes is not None and size > max_bytes:
        return f"{size} bytes, over the limit of {max_bytes} bytes per intent"
    if not intent.strip():
        return "empty intent"
    return None


__all__ = ["MAX_INTENT_BYTES", "intent_problem"]
