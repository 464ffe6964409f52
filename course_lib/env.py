"""The environment: a version/device report, one seeding helper, one device choice.

Nothing here imports torch or tensorflow at module import time.
"""

import os
import platform
import random
import sys

REPORTED_PACKAGES = (
    "course-kit", "numpy", "scipy", "pandas", "scikit-learn", "matplotlib", "pydicom",
    "pooch", "torch", "torchvision", "tensorflow", "keras", "papermill", "nbval",
)
DEVICE_ENV_VAR = "COURSE_DEVICE"


def package_version(name):
    """Installed version of distribution ``name``, or "not installed"."""
    import importlib.metadata  # here, not at the top: `course-kit --help` need not load it

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def pick_device(preferred=None):
    """The torch device to use: ``preferred``, else ``$COURSE_DEVICE``, else CUDA, else CPU.

    Chosen once per notebook and passed around, so no cell hard-codes ``"cuda"``.
    Asking for CUDA on a machine without it falls back to the CPU with a warning.
    """
    import torch

    wanted = preferred or os.environ.get(DEVICE_ENV_VAR) or "auto"
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(wanted)
    if device.type == "cuda" and not torch.cuda.is_available():
        import warnings

        warnings.warn(f"device {wanted!r} asked for but CUDA is not available: using the CPU")
        return torch.device("cpu")
    return device


def environment_report(with_device=True):
    """A short text report: Python, platform, CPU count, package versions and device."""
    lines = [
        f"python        {platform.python_version()} ({platform.python_implementation()})",
        f"platform      {platform.platform()}",
        f"cpu cores     {os.cpu_count()}",
        f"profile       {os.environ.get('COURSE_PROFILE') or 'default'}",
    ]
    lines += [f"{name:<13} {package_version(name)}" for name in REPORTED_PACKAGES]
    if with_device and package_version("torch") != "not installed":
        import torch

        device = pick_device()
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
        lines.append(f"device        {device} ({name}), torch threads {torch.get_num_threads()}")
    return "\n".join(lines)


def seed_everything(seed):
    """Seed Python, NumPy, and torch and keras/tensorflow if they are imported.

    Frameworks are seeded only when already imported, so call this after your imports;
    the return value lists what was seeded.
    """
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)  # for child processes
    seeded = ["python", "numpy"]
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
        seeded.append("torch")
    if "keras" in sys.modules:
        sys.modules["keras"].utils.set_random_seed(seed)
        seeded.append("keras")
    elif "tensorflow" in sys.modules:
        sys.modules["tensorflow"].random.set_seed(seed)
        seeded.append("tensorflow")
    return seeded
