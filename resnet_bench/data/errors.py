"""The one error type for bad data."""

from __future__ import annotations

from typing import Any


class DatasetError(ValueError):
    """A missing, corrupt or wrongly formatted dataset; the message is one line naming the path."""

    def __init__(self, path: Any, problem: str) -> None:
        # Collapse newlines so that the CLI's "error: ..." stays a single line even when the
        # problem text comes from a library exception.
        text = " ".join(f"{path}: {problem}".split())
        super().__init__(text)
        self.path = str(path)
