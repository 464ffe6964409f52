"""Checks of lesson 03's exercises (notebook ``03_patch_to_whole_image``)."""

from course_lib.exercises import ExerciseSet

EXERCISES = ExerciseSet("03")


def _close(answer, expected, tolerance):
    try:
        return abs(float(answer) - expected) <= tolerance
    except (TypeError, ValueError):
        return False


@EXERCISES.exercise(
    "03.1",
    hint="The factor maps the largest value the data can hold onto 255; how large is that for 14 bits?",
    wrong_answers=(255 / 65535, 255 / 4095, 255 / 16384),
)
def _(answer):
    return _close(answer, 255 / 16383, 1e-7)


@EXERCISES.exercise(
    "03.2",
    hint="A trunk of total stride 32 divides each side by 32; the answer is (rows, cols).",
    wrong_answers=((72, 56), (1152, 896), (28, 36)),
)
def _(answer):
    return tuple(answer) == (36, 28) if isinstance(answer, (tuple, list)) else False


@EXERCISES.exercise(
    "03.3",
    hint="A cell exists for every patch position that fits entirely: (368 - 48) / 16 + 1 rows.",
    wrong_answers=(23 * 15, 22 * 14, 20 * 12),
)
def _(answer):
    return answer == 21 * 13


@EXERCISES.exercise(
    "03.4",
    hint="Each VGG-style block is a 3x3 convolution 512 -> 512 with bias, plus BatchNorm's 4 x 512; "
         "then the 2-way head on 512 features.",
    wrong_answers=(2_362_882, 4_722_688, 4_720_642),
)
def _(answer):
    return answer == 2 * (3 * 3 * 512 * 512 + 512 + 4 * 512) + 512 * 2 + 2
