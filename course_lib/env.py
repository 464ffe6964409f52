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


def gpu_names():
    """Names of the NVIDIA GPUs that ``nvidia-smi`` lists ([] without one), no framework imported."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listed = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listed.stdout.splitlines() if line.strip()] if listed.returncode == 0 else []


def describe_device():
    """One line on the hardware, without importing a framework: the GPUs, else the CPU.

    >>> isinstance(describe_device(), str)
    True
    """
    gpus = gpu_names()
    if gpus:
        return f"GPU: {', '.join(gpus)}"
    return f"CPU: {platform.processor() or platform.machine() or 'unknown'}, {os.cpu_count()} cores (no GPU found)"


def environment_report(with_device=True, profile=None):
    """A short text report: Python, platform, CPU count, the active profile, package versions, device.

    ``profile``: the notebook's ``PROFILE`` (default: ``$COURSE_PROFILE``, else ``default``).
    ``with_device``: ask the framework which device it will use (imports torch if it is
    installed, or uses TensorFlow if it is already imported); without it nothing heavy is
    imported and the device line says what ``nvidia-smi`` sees.
    """
    from course_lib.profiles import get_profile

    lines = [
        f"python        {platform.python_version()} ({platform.python_implementation()})",
        f"platform      {platform.platform()}",
        f"cpu cores     {os.cpu_count()}",
        f"profile       {get_profile(profile)}",
    ]
    lines += [f"{name:<13} {package_version(name)}" for name in REPORTED_PACKAGES]
    if with_device and "tensorflow" in sys.modules and "torch" not in sys.modules:
        gpus = sys.modules["tensorflow"].config.list_physical_devices("GPU")
        lines.append(f"device        tensorflow: {', '.join(g.name for g in gpus) or 'CPU'}")
    elif with_device and package_version("torch") != "not installed":
        import torch

        device = pick_device()
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
        lines.append(f"device        {device} ({name}), torch threads {torch.get_num_threads()}")
    else:
        lines.append(f"device        {describe_device()}")
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
