"""Test-wide set-up: structured logs at WARNING so test output stays readable."""

from runtime.logs import configure_logging

configure_logging("WARNING")
