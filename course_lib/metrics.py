"""Metrics, and the check every notebook uses for the figures it reproduces."""

import math


class ReproductionError(AssertionError):
    """A reproduced figure that is outside the tolerance of the published one."""


def check_reproduced(name, measured, published, tolerance, decimals=4):
    """Print ``name: measured (published …)`` rounded, and raise if they disagree.

    The printed line is what nbval compares; the exception makes a notebook fail loudly
    when an upgrade silently changes a number.
    """
    measured = float(measured)
    agrees = math.isclose(measured, published, rel_tol=0.0, abs_tol=tolerance)
    print(f"{name}: {measured:.{decimals}f} (published {published:.{decimals}f}, "
          f"tolerance {tolerance:g}) {'ok' if agrees else 'DIFFERS'}")
    if not agrees:
        raise ReproductionError(
            f"{name}: reproduced {measured!r} but published {published!r} (tolerance {tolerance})"
        )
    return measured
