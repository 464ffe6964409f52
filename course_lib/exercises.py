"""Exercises that a student checks: right or wrong, with a hint, never the solution.

Each lesson ends with a few exercises. A lesson's module registers a check per exercise
on an :class:`ExerciseSet`; the notebook calls :meth:`ExerciseSet.check` with the
student's answer and prints the verdict::

    EXERCISES = ExerciseSet("01")

    @EXERCISES.exercise("01.1", hint="Count the zero-padded rows, not the air.",
                        wrong_answers=(0.82,))
    def _(answer):
        return abs(answer - 0.71) < 0.01

Solutions follow otter-grader's conventions: the lesson's source (``notebooks/src/``)
holds them between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` lines (or on lines ending
in ``# SOLUTION``), and the stored student notebook is generated from it with
:func:`student_version`, which replaces them by ``...``. The test suite runs every
solution through its check (it must pass) and every listed typical wrong answer (it must
fail, showing its hint).

>>> demo = ExerciseSet("99")
>>> @demo.exercise("99.1", hint="Two plus two.", wrong_answers=(5,))
... def _(answer):
...     return answer == 4
>>> demo.check("99.1", 5)
99.1: not yet. Hint: Two plus two.
>>> demo.check("99.1", ...)
99.1: not answered yet (replace ... by your answer)
>>> demo.check("99.1", 4).passed
True
"""

import re
from dataclasses import dataclass

__all__ = ["Exercise", "CheckResult", "ExerciseSet", "student_version"]


@dataclass(frozen=True)
class Exercise:
    """One exercise: its id ("01.2"), its check, its hint and the typical wrong answers."""

    exercise_id: str
    check: object  # callable(answer) -> bool
    hint: str
    wrong_answers: tuple = ()


@dataclass(frozen=True)
class CheckResult:
    """The verdict on one answer; its text is what the notebook shows."""

    exercise_id: str
    passed: bool
    message: str

    def __repr__(self):
        return self.message


class ExerciseSet:
    """The exercises of one lesson, by id."""

    def __init__(self, lesson):
        self.lesson = lesson
        self.exercises = {}

    def exercise(self, exercise_id, hint, wrong_answers=()):
        """Decorator registering ``check(answer) -> bool`` as exercise ``exercise_id``."""
        if not exercise_id.startswith(f"{self.lesson}."):
            raise ValueError(f"exercise {exercise_id!r} does not belong to lesson {self.lesson}")

        def register(check):
            if exercise_id in self.exercises:
                raise ValueError(f"exercise {exercise_id} is registered twice")
            self.exercises[exercise_id] = Exercise(exercise_id, check, hint, tuple(wrong_answers))
            return check

        return register

    def check(self, exercise_id, answer):
        """Check ``answer``: a :class:`CheckResult` that reads "right" or "not yet" with the hint."""
        if exercise_id not in self.exercises:
            known = ", ".join(sorted(self.exercises)) or "none"
            raise KeyError(f"no exercise {exercise_id!r} in lesson {self.lesson}; its exercises are {known}")
        exercise = self.exercises[exercise_id]
        blank = CheckResult(exercise_id, False, f"{exercise_id}: not answered yet (replace ... by your answer)")
        if answer is Ellipsis:
            return blank
        try:
            passed = bool(exercise.check(answer))
        except NotImplementedError:  # a function still to be written
            return blank
        except Exception as error:  # a malformed answer is a wrong answer, with the reason
            return CheckResult(exercise_id, False,
                               f"{exercise_id}: not yet ({type(error).__name__}: {error}). Hint: {exercise.hint}")
        if passed:
            return CheckResult(exercise_id, True, f"{exercise_id}: right!")
        return CheckResult(exercise_id, False, f"{exercise_id}: not yet. Hint: {exercise.hint}")


_BLOCK = re.compile(r"^([ \t]*)# BEGIN SOLUTION[^\n]*\n.*?^[ \t]*# END SOLUTION[^\n]*\n", re.M | re.S)
_LINE = re.compile(r"^([ \t]*)([^\n=]*?=)[ \t]*[^\n]*?#[ \t]*SOLUTION[ \t]*$", re.M)


def student_version(source):
    """The student's version of a cell's source: solution blocks become ``answer = ...``
    (the block's first assignment target) or, for a function, its signature with ``...`` as
    body; ``x = value  # SOLUTION`` lines become ``x = ...``.

    >>> print(student_version("# BEGIN SOLUTION\\nanswer = 0.71\\n# END SOLUTION\\ncheck(answer)\\n"), end="")
    answer = ...  # your answer
    check(answer)
    >>> print(student_version("t = 0.03  # SOLUTION"))
    t = ...
    """
    def block(match):
        indent, body = match.group(1), match.group(0)
        function = re.search(r"^[ \t]*def ([A-Za-z_][A-Za-z0-9_]*\(.*\)):", body, re.M)
        if function:  # a function to write: keep its signature
            return f"{indent}def {function.group(1)}:\n{indent}    raise NotImplementedError(\"your code here\")\n"
        target = re.search(r"^[ \t]*([A-Za-z_][A-Za-z0-9_]*)\s*=", body, re.M)
        name = target.group(1) if target else "answer"
        return f"{indent}{name} = ...  # your answer\n"

    return _LINE.sub(lambda m: f"{m.group(1)}{m.group(2)} ...", _BLOCK.sub(block, source))
