"""Profiles, seeding, and the promise that `import course_lib` stays light."""

import random
import subprocess
import sys

import numpy as np
import pytest

import course_lib
from course_lib.profiles import UnknownProfileError


def test_profile_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    assert course_lib.get_profile() == "default"
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    assert course_lib.get_profile() == "smoke"
    assert course_lib.get_profile("full") == "full"


def test_unknown_profile_lists_the_valid_ones(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    with pytest.raises(UnknownProfileError, match="smoke, default, full"):
        course_lib.get_profile()


def test_settings_for_picks_one_profile_and_needs_all_three():
    settings = dict(smoke={"n": 1}, default={"n": 10}, full={"n": 1000})
    assert course_lib.settings_for("default", **settings) == {"n": 10}
    with pytest.raises(UnknownProfileError, match="missing"):
        course_lib.settings_for("smoke", smoke={"n": 1}, default={"n": 2})


def test_seed_everything_makes_python_and_numpy_repeat():
    course_lib.seed_everything(7)
    first = (random.random(), np.random.rand())
    course_lib.seed_everything(7)
    assert (random.random(), np.random.rand()) == first


def test_seed_everything_seeds_torch_when_imported():
    torch = pytest.importorskip("torch")
    assert "torch" in course_lib.seed_everything(3)
    a = torch.rand(3)
    course_lib.seed_everything(3)
    assert torch.equal(a, torch.rand(3))


def test_import_course_lib_imports_no_framework():
    code = "import sys, course_lib, course_lib.data, course_lib.cli; print(sorted({'torch','tensorflow','keras'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_pick_device_falls_back_to_cpu(monkeypatch):
    torch = pytest.importorskip("torch")
    from course_lib.env import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device().type == "cpu"
    with pytest.warns(UserWarning, match="CUDA is not available"):
        assert pick_device("cuda").type == "cpu"


def test_a_mis_cased_profile_is_refused_with_the_right_name():
    from course_lib.profiles import UnknownProfileError, get_profile

    with pytest.raises(UnknownProfileError, match="Did you mean 'smoke'"):
        get_profile("SMOKE")
