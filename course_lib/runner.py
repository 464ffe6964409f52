"""Run the course's notebooks with papermill and write an index of the results.

``make course`` calls ``course-kit run --profile default``; the test suite runs the same
function in the ``smoke`` profile. Each notebook gets its ``PROFILE`` parameter injected
(papermill inserts it after the cell tagged ``parameters``) and runs with the notebook
folder as working directory, with progress bars off.
"""

import html
import json
import os
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from course_lib.paths import NOTEBOOKS
from course_lib.profiles import get_profile


@dataclass
class NotebookRun:
    """The outcome of one notebook run."""

    name: str
    profile: str
    status: str  # "ok", "failed" or "incomplete" (a code cell did not execute)
    seconds: float
    error: str = ""


def course_notebooks(folder=NOTEBOOKS):
    """The numbered notebooks of the course, in order."""
    return sorted(p for p in Path(folder).glob("[0-9][0-9]_*.ipynb"))


KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def notebook_from_source(source, solutions=False):
    """Read a lesson's jupytext "percent" source into a notebook with the kit's kernel metadata.

    The source holds the exercises' solutions (otter-grader's ``# BEGIN SOLUTION`` /
    ``# END SOLUTION`` markers); by default they are replaced as in the student version
    (:func:`course_lib.exercises.student_version`), the notebook that is stored and taught.
    ``solutions=True`` keeps them: the version CI runs to prove that every solution passes.
    """
    import jupytext

    from course_lib.exercises import student_version

    nb = jupytext.read(source)
    nb.metadata = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    for cell in nb.cells:
        cell.metadata.pop("lines_to_next_cell", None)
        if cell.cell_type == "code" and not solutions:
            cell.source = student_version(cell.source)
    return nb


def unexecuted_code_cells(notebook_path):
    """Indices of code cells that have no execution count in an executed notebook."""
    import nbformat

    nb = nbformat.read(notebook_path, as_version=4)
    return [i for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code" and cell.source.strip() and cell.execution_count is None]


def run_notebook(notebook, out_dir, profile, timeout=3600, cwd=None):
    """Execute ``notebook`` into ``out_dir`` in ``profile``, in folder ``cwd`` (default: the
    notebook's own); never raises for a failing cell."""
    import papermill

    profile = get_profile(profile)
    notebook = Path(notebook)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / notebook.name
    os.environ.setdefault("TQDM_DISABLE", "1")
    start = time.perf_counter()
    status, error = "ok", ""
    try:
        papermill.execute_notebook(
            str(notebook), str(output), parameters={"PROFILE": profile},
            cwd=str(cwd or notebook.parent), kernel_name="python3", progress_bar=False,
            execution_timeout=timeout, report_mode=False,
        )
        missing = unexecuted_code_cells(output)
        if missing:
            status, error = "incomplete", f"code cells not executed: {missing}"
    except Exception as exc:  # a failing cell: record it and go on with the next notebook
        status = "failed"
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-4000:]
    return NotebookRun(notebook.stem, profile, status, round(time.perf_counter() - start, 1), error)


def export_html(executed_notebook):
    """Write an HTML rendering beside an executed notebook and return its path."""
    import nbconvert

    body, _ = nbconvert.HTMLExporter().from_filename(str(executed_notebook))
    target = Path(executed_notebook).with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


def write_index(runs, out_dir):
    """Write ``index.html`` and ``timings.json`` listing each run with its status and time."""
    out_dir = Path(out_dir)
    rows = []
    for run in runs:
        html_name = f"{run.name}.html"
        link = (f'<a href="{html_name}">{run.name}</a>' if (out_dir / html_name).exists()
                else html.escape(run.name))
        rows.append(
            f"<tr><td>{link}</td><td><a href=\"{run.name}.ipynb\">ipynb</a></td>"
            f"<td class=\"{run.status}\">{run.status}</td><td>{run.seconds:.1f}</td>"
            f"<td><pre>{html.escape(run.error)}</pre></td></tr>"
        )
    profile = runs[0].profile if runs else "?"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Course kit: executed notebooks ({profile})</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:4px 10px;text-align:left}}
.ok{{color:#176117}} .failed,.incomplete{{color:#a00;font-weight:bold}}</style></head>
<body><h1>Executed notebooks, profile <code>{profile}</code></h1>
<table><tr><th>notebook</th><th>source</th><th>status</th><th>seconds</th><th>error</th></tr>
{chr(10).join(rows)}
</table><p>Synthetic phantoms are labelled as such in each notebook. Not for clinical use.</p>
</body></html>
"""
    (out_dir / "index.html").write_text(page, encoding="utf-8")
    (out_dir / "timings.json").write_text(json.dumps([asdict(r) for r in runs], indent=1))
    return out_dir / "index.html"


def run_course(out_dir, profile, notebooks=None, html_export=True):
    """Run every course notebook (or ``notebooks``) in ``profile`` and write the index."""
    profile = get_profile(profile)
    runs = []
    for notebook in notebooks or course_notebooks():
        print(f"running {Path(notebook).name} ({profile}) ...", flush=True)
        run = run_notebook(notebook, out_dir, profile)
        if html_export and (Path(out_dir) / Path(notebook).name).exists():
            export_html(Path(out_dir) / Path(notebook).name)
        print(f"  {run.status} in {run.seconds:.1f} s {run.error[:300]}", flush=True)
        runs.append(run)
    write_index(runs, out_dir)
    return runs


def format_timing_table(runs):
    """A plain-text table of notebook, status and seconds."""
    width = max([len(r.name) for r in runs] + [8])
    lines = [f"{'notebook':<{width}}  {'profile':<8} {'status':<10} {'seconds':>8}"]
    lines += [f"{r.name:<{width}}  {r.profile:<8} {r.status:<10} {r.seconds:>8.1f}" for r in runs]
    return "\n".join(lines)
