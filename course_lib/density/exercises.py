"""Checks of lesson 02's exercises (right or wrong, with a hint; never the solution)."""

from course_lib.exercises import ExerciseSet

EXERCISES = ExerciseSet("02")


@EXERCISES.exercise("02.1", hint="A k x k convolution has k*k*C_in*C_out weights plus one bias per output channel.",
                    wrong_answers=(147_456, 16_512, 3 * 3 * 128))
def _(answer):
    return answer == 147_584


@EXERCISES.exercise("02.2", hint="Follow the side through the stem (stride 2), the pool (stride 2) and the three "
                                 "strided stages; 'same' padding rounds up: ceil(n / 2).",
                    wrong_answers=(21, 32, 8, 15))
def _(answer):
    return answer == 16


@EXERCISES.exercise("02.3", hint="Every error is exactly one class off; quadratic weights charge 1/9 of the worst "
                                 "error for it, linear ones 1/3. Use weighted_kappa with weights='quadratic'.",
                    wrong_answers=(0.0, 0.1901, 1.0))
def _(answer):
    return abs(float(answer) - 0.5354) < 2e-3


@EXERCISES.exercise("02.4", hint="A bootstrap interval narrows like 1 / sqrt(n): halving it needs how many times "
                                 "the subjects?",
                    wrong_answers=(256, 181, 128))
def _(answer):
    return 480 <= float(answer) <= 540
