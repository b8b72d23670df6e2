"""Logging set-up: JSON lines on stderr that keep working when a runner swaps stderr out."""

from __future__ import annotations

import io
import json
import sys

import pytest
import structlog

from runtime.logs import configure_logging


def test_a_closed_stderr_from_an_earlier_command_does_not_break_later_logging(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Logs follow the current stderr, so a runner's closed buffer cannot make later log lines raise."""
    swapped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", swapped)
    configure_logging("INFO")
    swapped.close()
    monkeypatch.undo()
    structlog.get_logger().warning("incident.resume_after_crash", incident_id="inc-1")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert json.loads(line)["event"] == "incident.resume_after_crash"
    assert json.loads(line)["incident_id"] == "inc-1"
