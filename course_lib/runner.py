"""Run the course's notebooks with papermill and write an index of the results.

``make course`` calls ``course-kit run --profile default``; the test suite runs the same
function in the ``smoke`` profile. Each notebook gets its ``PROFILE`` parameter injected
(papermill inserts it after the cell tagged ``parameters``), and ``COURSE_PROFILE`` set for
its kernel, and runs with the notebook folder as working directory, with progress bars off.
It runs in a kernel of the Python that runs this code (:data:`CURRENT_ENV_KERNEL`: the
active conda env or venv, whatever kernels Jupyter has installed), or in a named one.

``build/index.html`` then shows when, on which commit, with which versions and on which
device the course ran, each notebook's status and time, the real-data sections that were
skipped and why (:func:`skipped_sections`), with links to each notebook's HTML: formulas
render offline (a local MathJax) and widgets, which need a live kernel, say so.
"""

import datetime
import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from course_lib.paths import CHECKOUT, NOTEBOOKS
from course_lib.profiles import PROFILE_ENV_VAR, get_profile

#: The kernel name that means "this Python": no kernelspec needs to be installed for it.
CURRENT_ENV_KERNEL = "course-kit-current-env"
#: Packages whose versions the index page shows.
INDEX_PACKAGES = ("course-kit", "numpy", "torch", "tensorflow", "keras", "scikit-learn", "pydicom",
                  "papermill", "nbconvert")
#: A skip notice in a notebook's output: ``[real data unavailable, section skipped] KEY: why``
#: (:func:`course_lib.data.try_fetch`), ``[UCSB benchmark skipped] why`` or ``skipped: why``.
SKIP_NOTICE = re.compile(r"^[ \t]*(\[[^\]\n]*\bskipped\]|skipped:)[ \t]*(.*)$", re.MULTILINE)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ("<p><em>An interactive widget: it needs a running kernel. Open the notebook in "
               "Jupyter to use it.</em></p>")


@dataclass
class NotebookRun:
    """The outcome of one notebook run."""

    name: str
    profile: str
    status: str  # "ok", "failed" or "incomplete" (a code cell did not execute)
    seconds: float
    error: str = ""
    skipped: list = field(default_factory=list)  # skip notices of real-data sections


def course_notebooks(folder=None):
    """The numbered notebooks of the course (default: the checkout's ``notebooks/``), in order."""
    if folder is None:
        from course_lib.paths import require_checkout

        folder = require_checkout("running the course's notebooks") / "notebooks"
    return sorted(p for p in Path(folder).glob("[0-9][0-9]_*.ipynb"))


def _current_env_kernel_manager():
    """A kernel manager class whose :data:`CURRENT_ENV_KERNEL` is ``sys.executable -m ipykernel``
    (the way ``pytest --nbval-current-env`` runs); other names are Jupyter's installed kernels."""
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

    class CurrentEnvKernelSpecManager(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            if kernel_name == CURRENT_ENV_KERNEL:
                return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                                  display_name=f"Python ({sys.executable})", language="python")
            return super().get_kernel_spec(kernel_name)

    class CurrentEnvKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            kwargs.setdefault("kernel_spec_manager", CurrentEnvKernelSpecManager())
            super().__init__(**kwargs)

    return CurrentEnvKernelManager


def kernel_options(kernel=None):
    """Keyword arguments for papermill/nbclient to run in ``kernel`` (an installed Jupyter
    kernel's name), or by default in this Python (:data:`CURRENT_ENV_KERNEL`)."""
    if kernel and kernel != CURRENT_ENV_KERNEL:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        try:
            KernelSpecManager().get_kernel_spec(kernel)
        except NoSuchKernel:
            names = ", ".join(sorted(KernelSpecManager().find_kernel_specs())) or "none"
            raise LookupError(f"no Jupyter kernel named {kernel!r} (installed: {names}); leave out "
                              "--kernel to use this Python, or `python -m ipykernel install --user "
                              f"--name {kernel}` in the environment you mean") from None
        return {"kernel_name": kernel}
    return {"kernel_name": CURRENT_ENV_KERNEL, "kernel_manager_class": _current_env_kernel_manager()}


def output_text(cell):
    """The text a code cell printed or displayed (streams, text/plain results, errors)."""
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif output.get("output_type") in ("execute_result", "display_data"):
            parts.append(str(output.get("data", {}).get("text/plain", "")))
    return "".join(parts)


def skipped_sections(notebook):
    """``[(code cell index, notice), ...]``: the skip notices that real-data sections printed
    because their data could not be had (see :data:`SKIP_NOTICE`), in an executed notebook
    (a path or a notebook node).

    >>> import nbformat
    >>> cell = nbformat.v4.new_code_cell("", outputs=[nbformat.v4.new_output(
    ...     "stream", text="[real data unavailable, section skipped] gmic/x.png: not here\\n")])
    >>> skipped_sections(nbformat.v4.new_notebook(cells=[cell]))
    [(0, '[real data unavailable, section skipped] gmic/x.png: not here')]
    """
    import nbformat

    nb = nbformat.read(notebook, as_version=4) if isinstance(notebook, (str, Path)) else notebook
    code = [c for c in nb.cells if c.cell_type == "code"]
    return [(index, match.group(0).strip()) for index, cell in enumerate(code)
            for match in SKIP_NOTICE.finditer(output_text(cell))]


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


def run_notebook(notebook, out_dir, profile, timeout=3600, cwd=None, kernel=None):
    """Execute ``notebook`` into ``out_dir`` in ``profile``, in folder ``cwd`` (default: the
    notebook's own), in ``kernel`` (default: this Python); never raises for a failing cell."""
    import papermill

    profile = get_profile(profile)
    notebook = Path(notebook)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / notebook.name
    options = kernel_options(kernel)
    os.environ.setdefault("TQDM_DISABLE", "1")
    saved_profile = os.environ.get(PROFILE_ENV_VAR)
    os.environ[PROFILE_ENV_VAR] = profile  # the kernel inherits it: environment_report() says it
    start = time.perf_counter()
    status, error = "ok", ""
    try:
        papermill.execute_notebook(
            str(notebook), str(output), parameters={"PROFILE": profile},
            cwd=str(cwd or notebook.parent), progress_bar=False,
            execution_timeout=timeout, report_mode=False, **options,
        )
        missing = unexecuted_code_cells(output)
        if missing:
            status, error = "incomplete", f"code cells not executed: {missing}"
    except Exception as exc:  # a failing cell: record it and go on with the next notebook
        status = "failed"
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-4000:]
    finally:
        if saved_profile is None:
            os.environ.pop(PROFILE_ENV_VAR, None)
        else:
            os.environ[PROFILE_ENV_VAR] = saved_profile
    skipped = [notice for _, notice in skipped_sections(output)] if output.exists() else []
    return NotebookRun(notebook.stem, profile, status, round(time.perf_counter() - start, 1), error, skipped)


def local_mathjax(out_dir):
    """Copy MathJax (from the ``jupyter-server-mathjax`` package) to ``out_dir/mathjax`` once and
    return the exporter's ``mathjax_url`` for pages in ``out_dir``: formulas render offline."""
    import jupyter_server_mathjax

    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    target = Path(out_dir) / "mathjax"
    if not (target / "MathJax.js").is_file():
        shutil.copytree(source, target, dirs_exist_ok=True)
    return "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def _without_widget_outputs(nb):
    """Widget views need a live kernel: a static page would show an empty ``Out[n]:`` (and load
    the widget manager from a CDN). Each one becomes a short note saying so."""
    import nbformat

    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code" and any(WIDGET_VIEW in o.get("data", {}) for o in cell.get("outputs", [])):
            cell.outputs = [o for o in cell.outputs if WIDGET_VIEW not in o.get("data", {})]
            cell.outputs.append(nbformat.v4.new_output("display_data", data={"text/html": WIDGET_NOTE}))
    return nb


def export_html(executed_notebook):
    """Write an HTML rendering beside an executed notebook and return its path: MathJax from
    the folder beside it (no CDN), widgets replaced by a note."""
    import nbconvert
    import nbformat

    executed_notebook = Path(executed_notebook)
    nb = _without_widget_outputs(nbformat.read(executed_notebook, as_version=4))
    exporter = nbconvert.HTMLExporter(mathjax_url=local_mathjax(executed_notebook.parent))
    body, _ = exporter.from_notebook_node(nb)
    target = executed_notebook.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


def kit_commit():
    """The checkout's commit (``abc1234``, ``+ local changes`` when dirty), or "not a git checkout"."""
    if CHECKOUT is None or shutil.which("git") is None:
        return "not a git checkout"
    try:
        head = subprocess.run(["git", "-C", str(CHECKOUT), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=20)
        dirty = subprocess.run(["git", "-C", str(CHECKOUT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    if head.returncode != 0:
        return "not a git checkout"
    return head.stdout.strip() + (" + local changes" if dirty.stdout.strip() else "")


def run_facts():
    """When, on which commit, with which versions and on which device the course runs."""
    from course_lib.env import describe_device, package_version

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": kit_commit(),
        "python": sys.version.split()[0],
        "versions": {name: package_version(name) for name in INDEX_PACKAGES},
        "device": describe_device(),
    }


def write_index(runs, out_dir, facts=None):
    """Write ``index.html``, ``timings.json`` (per notebook) and ``facts.json``: the run's facts
    (:func:`run_facts`), then each notebook's status, time, skipped real-data sections and error."""
    out_dir = Path(out_dir)
    facts = facts or run_facts()
    rows = []
    for run in runs:
        html_name = f"{run.name}.html"
        link = (f'<a href="{html_name}">{run.name}</a>' if (out_dir / html_name).exists()
                else html.escape(run.name))
        skipped = "<br>".join(html.escape(s) for s in run.skipped) or "none"
        rows.append(
            f"<tr><td>{link}</td><td><a href=\"{run.name}.ipynb\">ipynb</a></td>"
            f"<td class=\"{run.status}\">{run.status}</td><td class=\"num\">{run.seconds:.1f}</td>"
            f"<td class=\"{'skip' if run.skipped else ''}\">{skipped}</td>"
            f"<td><pre>{html.escape(run.error)}</pre></td></tr>"
        )
    profile = runs[0].profile if runs else "?"
    total = sum(r.seconds for r in runs)
    n_ok = sum(r.status == "ok" for r in runs)
    n_skipped = sum(len(r.skipped) for r in runs)
    versions = ", ".join(f"{name} {version}" for name, version in facts["versions"].items())
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Course kit: executed notebooks ({profile})</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:4px 10px;text-align:left;vertical-align:top}}
.num{{text-align:right}} .ok{{color:#176117}} .failed,.incomplete{{color:#a00;font-weight:bold}}
.skip{{color:#8a5a00}}</style></head>
<body><h1>Executed notebooks, profile <code>{profile}</code></h1>
<table class="facts">
<tr><th>date</th><td>{html.escape(facts["date"])}</td></tr>
<tr><th>commit</th><td><code>{html.escape(facts["commit"])}</code></td></tr>
<tr><th>device</th><td>{html.escape(facts["device"])}</td></tr>
<tr><th>python</th><td>{html.escape(facts["python"])}</td></tr>
<tr><th>versions</th><td>{html.escape(versions)}</td></tr>
<tr><th>total</th><td>{total:.1f} s of notebook run time, {n_ok} of {len(runs)} notebooks ok, {n_skipped} real-data section(s) skipped</td></tr>
</table>
<h2>Notebooks</h2>
<table><tr><th>notebook</th><th>executed</th><th>status</th><th>seconds</th><th>skipped real-data sections (why)</th><th>error</th></tr>
{chr(10).join(rows)}
</table><p>A skipped section printed why: its real data was neither cached, in the mirror
(<code>COURSE_DATA_MIRROR</code>) nor downloadable; <code>course-kit fetch --list</code> shows where each file is.
Synthetic phantoms are labelled as such in each notebook. Not for clinical use.</p>
</body></html>
"""
    (out_dir / "index.html").write_text(page, encoding="utf-8")
    timings = {r.name: {k: v for k, v in asdict(r).items() if k != "name"} for r in runs}
    (out_dir / "timings.json").write_text(json.dumps(timings, indent=1))
    (out_dir / "facts.json").write_text(json.dumps(facts, indent=1))
    return out_dir / "index.html"


def run_course(out_dir, profile, notebooks=None, html_export=True, kernel=None):
    """Run every course notebook (or ``notebooks``) in ``profile`` and write the index."""
    profile = get_profile(profile)
    facts = run_facts()
    runs = []
    for notebook in notebooks or course_notebooks():
        print(f"running {Path(notebook).name} ({profile}) ...", flush=True)
        run = run_notebook(notebook, out_dir, profile, kernel=kernel)
        if html_export and (Path(out_dir) / Path(notebook).name).exists():
            export_html(Path(out_dir) / Path(notebook).name)
        print(f"  {run.status} in {run.seconds:.1f} s {run.error[:300]}", flush=True)
        for notice in run.skipped:
            print(f"  {notice}", flush=True)
        runs.append(run)
    write_index(runs, out_dir, facts)
    return runs


def format_timing_table(runs):
    """A plain-text table of notebook, status and seconds."""
    width = max([len(r.name) for r in runs] + [8])
    lines = [f"{'notebook':<{width}}  {'profile':<8} {'status':<10} {'seconds':>8}"]
    lines += [f"{r.name:<{width}}  {r.profile:<8} {r.status:<10} {r.seconds:>8.1f}" for r in runs]
    return "\n".join(lines)
