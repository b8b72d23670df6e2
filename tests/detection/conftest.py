"""Detection tests exercise the compiled batch loops: load them once, before any test runs."""

from __future__ import annotations

import pytest

from runtime.detection.columnar import kernels_ready


@pytest.fixture(autouse=True, scope="session")
def _compiled_batch_loops() -> None:
    kernels_ready(wait=True)
