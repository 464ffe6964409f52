"""Checks of lesson 04's exercises (right or wrong, with a hint; never the solution)."""

from course_lib.exercises import ExerciseSet

EXERCISES = ExerciseSet("04")


@EXERCISES.exercise("04.1", hint="Rows of patches times columns of patches; each side divided by 28.",
                    wrong_answers=(400, 224 * 336 // 28))
def _(answer):
    return answer == 96


@EXERCISES.exercise("04.2", hint="U is a linear layer from L to D: a D x L weight matrix and D biases.",
                    wrong_answers=(500 * 128, 64_257, 128))
def _(answer):
    return answer == 64_128


@EXERCISES.exercise("04.3", hint="Row-major: the row is the index divided by the number of columns (25).",
                    wrong_answers=((13, 9), (9, 13)))
def _(answer):
    return tuple(answer) == (8, 17)


@EXERCISES.exercise("04.4", hint="Equal scores give equal softmax weights: count the padded instances.",
                    wrong_answers=(0.0, 37 / 400))
def _(answer):
    return abs(float(answer) - 363 / 400) < 1e-6


@EXERCISES.exercise("04.5", hint="Start from u = s. The patch has 4 neighbours and one of them scores 1; "
                                 "then weigh its own score and that mean by 1 - alpha and alpha.",
                    wrong_answers=(0.25, 0.5, 0.0))
def _(answer):
    return abs(float(answer) - 0.125) < 1e-6
