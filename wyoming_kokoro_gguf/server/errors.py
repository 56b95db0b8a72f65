"""The errors a request can end with, each carrying the one line and code a client is sent."""

from __future__ import annotations


class RequestError(Exception):
    """A request the server refuses, with the one-line text sent in a Wyoming Error event."""

    def __init__(self, text: str, code: str) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


class EngineFailed(RequestError):
    """The engine could not be loaded (or stopped for good)."""

    def __init__(self, text: str) -> None:
        super().__init__(text, "engine_failed")


class EngineCrashed(RequestError):
    """The engine process died while working on this request."""

    def __init__(self, text: str) -> None:
        super().__init__(text, "engine_crashed")


def one_line(err: BaseException) -> str:
    """A user-facing single line for an exception (no traceback): users read logs, not stacks."""
    text = " ".join(str(err).split())
    if not text:
        return type(err).__name__
    if type(err).__module__.startswith("wyoming_kokoro_gguf") or isinstance(
        err, OSError | ValueError
    ):
        return text
    return f"{type(err).__name__}: {text}"
