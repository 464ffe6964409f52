"""course_lib: the thin shared library of the breast-imaging deep-learning course kit.

Importing it is cheap: neither torch nor tensorflow is imported here. Framework code
lives in modules named after the framework (for example ``course_lib.gmic.model``
needs torch) that only the notebooks needing them import.
"""

__version__ = "0.2.0"

from course_lib.profiles import PROFILES, get_profile, settings_for
from course_lib.env import environment_report, seed_everything

__all__ = [
    "PROFILES",
    "get_profile",
    "settings_for",
    "environment_report",
    "seed_everything",
    "__version__",
]
