"""Run profiles: how much work a notebook does.

Every notebook reads its profile from the ``COURSE_PROFILE`` environment variable in
its ``parameters`` cell (so that ``pytest --nbval`` and papermill both see it) and
derives its settings in the next cell with :func:`settings_for`.

- ``smoke``: seconds; the CI papermill run that proves every cell still executes.
- ``default``: what a student gets, a few minutes on a 2-core laptop CPU; the stored
  notebook outputs come from this profile and nbval checks them.
- ``full``: real datasets at full size, meant for a GPU.
"""

import difflib
import os

PROFILES = ("smoke", "default", "full")
PROFILE_ENV_VAR = "COURSE_PROFILE"


class UnknownProfileError(ValueError):
    """Raised for a profile name that is not one of :data:`PROFILES`."""


def get_profile(name=None):
    """Return a validated profile name: ``name``, else ``$COURSE_PROFILE``, else ``"default"``."""
    if name is None:
        name = os.environ.get(PROFILE_ENV_VAR) or "default"
    if name not in PROFILES:
        close = difflib.get_close_matches(str(name).lower(), PROFILES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownProfileError(
            f"unknown profile {name!r}: valid profiles are {', '.join(PROFILES)}.{hint} "
            f"Set {PROFILE_ENV_VAR} or the notebook's PROFILE parameter to one of them."
        )
    return name


def settings_for(profile, **per_profile):
    """Pick the settings of ``profile`` from keyword arguments named after the profiles.

    >>> settings_for("smoke", smoke=dict(epochs=1), default=dict(epochs=5), full=dict(epochs=50))
    {'epochs': 1}
    """
    profile = get_profile(profile)
    missing = [p for p in PROFILES if p not in per_profile]
    unknown = [p for p in per_profile if p not in PROFILES]
    if missing or unknown:
        raise UnknownProfileError(
            f"settings must be given for exactly the profiles {', '.join(PROFILES)}; "
            f"missing: {missing or 'none'}, unknown: {unknown or 'none'}"
        )
    return dict(per_profile[profile])
