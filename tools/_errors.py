"""How tools classify failure: transient (retry with the same key), permanent (stop), bad input."""

from __future__ import annotations


class TransientError(Exception):
    """The target may not have acted, or may have: retrying with the same idempotency key is safe.

    Raised by adapters for timeouts, connection errors and 5xx/408/429 answers.
    """


class PermanentError(Exception):
    """The target refused or cannot be reached by configuration: retrying will not help."""


class ParameterError(ValueError):
    """Parameters for a catalog action are invalid; the message names the action and the field."""

    def __init__(self, action: str, problems: list[str]) -> None:
        self.action = action
        self.problems = tuple(problems)
        super().__init__(f"invalid parameters for {action}: " + "; ".join(problems))
