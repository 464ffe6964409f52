"""The checks every hostile-input case makes (tests/test_hostile_*.py).

A case runs one ``course-kit`` command inside a sandbox folder and asserts four things:
the exit code, that the message names the offending file, that no input changed (sha256
of every file before and after) and that nothing was written outside the output folder.
"""

import hashlib
from pathlib import Path

from course_lib.cli import main


def snapshot(root):
    """{path: sha256} of every regular file under ``root`` (links and FIFOs are not read)."""
    found = {}
    for path in sorted(Path(root).rglob("*")):
        if path.is_file() and not path.is_symlink():
            found[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def run_case(capsys, sandbox, argv, *, code, names, output=None):
    """Run ``course-kit ARGV`` and check it (see the module docstring); returns (stdout, stderr).

    ``names`` are strings the messages (stdout and stderr together) must contain, e.g. the
    bad file's name; ``output`` is the one folder the command may write in (None: nowhere).
    """
    before = snapshot(sandbox)
    capsys.readouterr()
    try:
        status = main([str(arg) for arg in argv])
    except SystemExit as error:  # argparse's usage errors
        status = error.code
    out, err = capsys.readouterr()
    after = snapshot(sandbox)
    assert status == code, (status, out, err)
    for name in names:
        assert str(name) in out + err, (name, out, err)
    assert "Traceback" not in err
    output = Path(output).resolve() if output is not None else None

    def allowed(path):
        return output is not None and (path.resolve() == output or output in path.resolve().parents)

    changed = [path for path in after if before.get(path) != after[path] and not allowed(path)]
    removed = [path for path in before if path not in after and not allowed(path)]
    assert not changed, f"written outside the output folder: {changed}"
    assert not removed, f"removed outside the output folder: {removed}"
    return out, err
