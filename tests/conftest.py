"""Shared fixtures: the real reference metadata and small audio made on the fly."""

from __future__ import annotations

from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference() -> Path:
    if not REFERENCE.is_dir():
        pytest.fail(f"reference metadata not found at {REFERENCE}: tests need ../shared/reference beside the checkout")
    return REFERENCE
