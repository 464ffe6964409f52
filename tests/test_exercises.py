"""Exercise checks: typical wrong answers are refused with their hint, blanks are "not answered yet",
and the student version of a source hides every solution. (Every solution is run through its check by
the smoke run of its notebook, tests/test_notebooks.py::test_smoke_run.)"""

import importlib
import importlib.util

import pytest

from course_lib.exercises import ExerciseSet, student_version

PIPELINES = ("gmic", "density", "end2end", "amil")


def exercise_sets():
    """Every lesson's ExerciseSet: the core lessons' and each pipeline package's ``exercises`` module."""
    names = ["course_lib.lesson_exercises"] + [f"course_lib.{p}.exercises" for p in PIPELINES]
    found = []
    for name in names:
        if importlib.util.find_spec(name.rsplit(".", 1)[0]) and importlib.util.find_spec(name):
            module = importlib.import_module(name)
            found += [value for value in vars(module).values() if isinstance(value, ExerciseSet)]
    return found


EXERCISES = [(s, e) for s in exercise_sets() for e in s.exercises.values()]


@pytest.mark.parametrize("exercise_set, exercise", EXERCISES, ids=[e.exercise_id for _, e in EXERCISES])
def test_typical_wrong_answers_fail_with_their_hint(exercise_set, exercise):
    assert exercise.wrong_answers, f"{exercise.exercise_id} lists no typical wrong answer"
    assert exercise.hint
    for wrong in exercise.wrong_answers:
        result = exercise_set.check(exercise.exercise_id, wrong)
        assert not result.passed, f"{exercise.exercise_id} accepts the wrong answer {wrong!r}"
        assert exercise.hint in result.message


@pytest.mark.parametrize("exercise_set, exercise", EXERCISES, ids=[e.exercise_id for _, e in EXERCISES])
def test_a_blank_is_not_answered_yet(exercise_set, exercise):
    result = exercise_set.check(exercise.exercise_id, ...)
    assert not result.passed and "not answered yet" in result.message


def test_student_version_hides_solutions():
    source = ("x = 1\n# BEGIN SOLUTION\nanswer = x + 1\nanswer *= 2\n# END SOLUTION\n"
              "EXERCISES.check('01.1', answer)\n")
    student = student_version(source)
    assert "x + 1" not in student and "answer = ...  # your answer" in student
    assert student.endswith("EXERCISES.check('01.1', answer)\n") and student.startswith("x = 1\n")
    assert student_version("top = 0.03  # SOLUTION\n") == "top = ...\n"
    assert student_version("plain = 2\n") == "plain = 2\n"


def test_a_function_solution_becomes_a_stub():
    source = "# BEGIN SOLUTION\ndef pool(x, t):\n    return x.max()\n# END SOLUTION\nEXERCISES.check('05.1', pool)\n"
    student = student_version(source)
    assert "x.max()" not in student and "def pool(x, t):" in student and "NotImplementedError" in student
    demo = ExerciseSet("97")
    demo.exercise("97.1", hint="h", wrong_answers=(None,))(lambda pool: pool(2, 1) == 2)
    namespace = {}
    exec(student.replace("EXERCISES.check('05.1', pool)\n", ""), namespace)
    assert "not answered yet" in demo.check("97.1", namespace["pool"]).message


def test_exercise_sets_refuse_unknown_ids_and_duplicates():
    demo = ExerciseSet("98")
    demo.exercise("98.1", hint="h", wrong_answers=(0,))(lambda answer: answer == 1)
    with pytest.raises(KeyError, match="98.1"):
        demo.check("98.2", 1)
    with pytest.raises(ValueError, match="twice"):
        demo.exercise("98.1", hint="h")(lambda answer: True)
    with pytest.raises(ValueError, match="lesson 98"):
        demo.exercise("97.1", hint="h")
    assert "TypeError" in demo.check("98.1", object()).message or not demo.check("98.1", object()).passed
