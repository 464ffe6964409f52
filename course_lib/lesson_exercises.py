"""The exercises of the core lessons, ``00_getting_started`` (:data:`EXERCISES_00`) and
``01_dicom_and_preprocessing`` (:data:`EXERCISES_01`), with their checks (see
:mod:`course_lib.exercises`). Pipeline lessons keep theirs in ``course_lib/<pipeline>/exercises.py``.

>>> EXERCISES_01.check("01.1", 255).passed
False
>>> EXERCISES_01.check("01.1", 15.93).passed
True
"""

import numpy as np

from course_lib.exercises import ExerciseSet

__all__ = ["EXERCISES_00", "EXERCISES_01"]

EXERCISES_00 = ExerciseSet("00")
EXERCISES_01 = ExerciseSet("01")

# --------------------------------------------------------------------------------------
# 00 · Getting started
# --------------------------------------------------------------------------------------

#: Dense fractions of exercise 00.1, and their letters under BI-RADS 4th edition's quartiles.
DENSE_FRACTIONS_00_1 = (0.10, 0.25, 0.60, 0.80)


@EXERCISES_00.exercise(
    "00.1",
    hint=("BI-RADS 4th edition's quartiles: A below 25 %, B from 25 % to below 50 %, C from 50 % to below 75 %, "
          "D from 75 %. A fraction exactly on a boundary belongs to the denser letter."),
    wrong_answers=(["A", "A", "C", "D"], ["A", "B", "B", "D"], "ABCD"),
)
def _(answer):
    return list(answer) == ["A", "B", "C", "D"] and not isinstance(answer, str)


@EXERCISES_00.exercise(
    "00.2",
    hint="The largest stored value is 4095: how many binary digits does it need? (Not the container's 16.)",
    wrong_answers=(16, 4095, 8),
)
def _(answer):
    return isinstance(answer, (int, np.integer)) and int(answer) == 12


def _power_spectrum_case(beta=2.7):
    frequencies = np.linspace(0.02, 0.15, 40)
    return frequencies, 3.0 * frequencies ** -beta, beta


@EXERCISES_00.exercise(
    "00.3",
    hint=("P(f) = c f^-beta is a straight line in log-log: log P = log c - beta log f. Fit a line to "
          "(log f, log P) with np.polyfit(..., 1) and return minus its slope (a positive number)."),
    wrong_answers=(lambda f, p: np.polyfit(np.log(f), np.log(p), 1)[0],
                   lambda f, p: -np.polyfit(f, p, 1)[0],
                   lambda f, p: -np.polyfit(np.log(f), np.log(p), 1)[1]),
)
def _(fit_beta):
    for beta in (2.7, 3.1):
        frequencies, power, _ = _power_spectrum_case(beta)
        if abs(float(fit_beta(frequencies, power)) - beta) > 1e-3:
            return False
    return True


# --------------------------------------------------------------------------------------
# 01 · DICOM and preprocessing
# --------------------------------------------------------------------------------------


@EXERCISES_01.exercise(
    "01.1",
    hint=("The image is 12-bit (0..4095) in a 16-bit container; the rule 255/65535 assumes values up to "
          "65535. Multiply the largest stored value by the factor."),
    wrong_answers=(255, 255.0, 4095, 1.0),
)
def _(answer):
    return abs(float(answer) - 4095 * 255 / 65535) < 0.05


@EXERCISES_01.exercise(
    "01.2",
    hint=("GMIC mirrors the images of one side so that every breast faces right; a wrong horizontal_flip "
          "breaks exactly those. Answer with a set of view names such as {'L-CC'}."),
    wrong_answers=({"L-CC", "L-MLO"}, {"L-CC", "R-CC", "L-MLO", "R-MLO"}, {"R-CC"}, set()),
)
def _(answer):
    return set(answer) == {"R-CC", "R-MLO"}


def _window_case():
    rng = np.random.default_rng(0)
    window = np.zeros((64, 40), np.float32)
    window[8:56, :22] = rng.uniform(200, 4095, size=(48, 22))  # breast on the left, padding elsewhere
    return window


@EXERCISES_01.exercise(
    "01.3",
    hint=("GMIC standardises the WHOLE window, zero padding included: subtract the mean of every pixel and "
          "divide by their standard deviation (numpy's default, ddof=0)."),
    wrong_answers=(lambda w: (w - w[w > 0].mean()) / w[w > 0].std(),
                   lambda w: (w - w.mean()) / w.std(ddof=1),
                   lambda w: w / w.max()),
)
def _(zscore):
    window = _window_case()
    expected = (window - window.mean()) / window.std()
    got = np.asarray(zscore(window), dtype=np.float64)
    return got.shape == window.shape and np.allclose(got, expected, atol=1e-5)


@EXERCISES_01.exercise(
    "01.4",
    hint=("Count only the pixels the loader ADDED (outside the cropped image inside the 2944x1920 window), "
          "not the air that was already in the image. Give a fraction between 0 and 1, to 2 decimals."),
    wrong_answers=(0.82, 82, 0.0, 1.0),
)
def _(answer):
    return abs(float(answer) - 0.71) < 0.01
