"""Shared fixtures: real data from the registry and the GMIC conformance fixtures.

Tests that need them skip with the reason when they cannot be had, so `make test`
passes with and without the offline mirror.
"""

import os
from pathlib import Path

import pytest

from helpers import fetch_or_skip


@pytest.fixture
def registry_file():
    """``registry_file(key)`` -> local path of a registry file, or skip saying why."""

    return fetch_or_skip


@pytest.fixture(scope="session")
def gmic_fixture_dir():
    """The official-GMIC conformance fixture folder, from ``$COURSE_FIXTURES/gmic_official``."""
    root = os.environ.get("COURSE_FIXTURES")
    if not root:
        pytest.skip("COURSE_FIXTURES is not set: GMIC conformance fixtures unavailable")
    folder = Path(root) / "gmic_official"
    if not folder.is_dir():
        pytest.skip(f"{folder} does not exist: GMIC conformance fixtures unavailable")
    return folder
