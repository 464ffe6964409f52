"""Helpers shared by the test modules (pytest puts this folder on sys.path)."""

import pytest

from course_lib import data


def fetch_or_skip(key):
    """Local path of registry file ``key``, or skip the test saying why it is unavailable."""
    try:
        return data.fetch(key)
    except data.DataUnavailableError as error:
        pytest.skip(f"real data unavailable (set COURSE_DATA_MIRROR or go online): {error}")
