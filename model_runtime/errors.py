"""Errors the user can act on: each carries a stable code, a message naming the file or
frame, and a hint saying what to do. The CLI prints them to stderr without a traceback and the
server sends them as ``error`` events."""
from __future__ import annotations


class UserError(Exception):
    """A failure caused by the input or the environment, not by a bug."""

    code = "user_error"

    def __init__(self, message: str, hint: str = "", code: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code:
            self.code = code

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class InputError(UserError):
    """Footage that cannot be read: missing, empty, corrupt, unsupported."""

    code = "bad_input"


class CaptureFolderError(UserError):
    """A capture folder that cannot be written or that belongs to another capture."""

    code = "capture_folder"


class Cancelled(Exception):
    """Raised inside a running job when the user cancelled it."""
