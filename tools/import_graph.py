"""What each part of ``course_lib`` imports, and whether the layering rules hold.

    python tools/import_graph.py          # print the graph and the verdict; exit 1 if a rule is broken

``course_lib`` is a small shared core plus one package per published pipeline
(:data:`PIPELINES`). The rules:

1. no module of the core imports a pipeline package;
2. no pipeline package imports another pipeline package;
3. there is no import cycle between modules.

The one exception to rule 1 is the entry point (:data:`ENTRY_POINTS`): ``course_lib.cli``
loads each pipeline's ``cli`` module by name so that it can add its sub-commands, and
``course_lib.samples`` writes every lesson's sample data, GMIC's exams included. Imports are
read with :mod:`ast` (inside functions too); nothing is imported or run.
"""

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "course_lib"
PIPELINES = ("gmic", "density", "end2end", "amil")
ENTRY_POINTS = ("course_lib.cli", "course_lib.samples")


def module_name(path, package=PACKAGE):
    """``course_lib/gmic/model.py`` -> ``course_lib.gmic.model`` (``__init__`` -> the package)."""
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path, package=PACKAGE):
    """The ``course_lib`` modules a file imports (absolute or relative, at any depth)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path, package).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            found.add(base)
            # ``from course_lib.gmic import model`` imports the module course_lib.gmic.model
            found.update(f"{base}.{alias.name}" for alias in node.names)
    known = {module_name(p, package) for p in package.rglob("*.py")}
    return {name for name in found if name in known and name.startswith("course_lib")}


def part_of(module):
    """The pipeline a module belongs to, or ``"core"``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in PIPELINES else "core"


def import_graph(package=PACKAGE):
    """{module: set of course_lib modules it imports}."""
    return {module_name(p, package): imported_modules(p, package) for p in sorted(package.rglob("*.py"))}


def _cycles(graph):
    """Import cycles, each as a list of modules (one per strongly connected component)."""
    index, low, stack, on_stack, result, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target == node:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in graph:
        if node not in index:
            visit(node)
    return result


def _parents(module):
    """``course_lib.gmic.model`` -> ``course_lib``, ``course_lib.gmic``: importing a module runs these."""
    parts = module.split(".")
    return {".".join(parts[:k]) for k in range(1, len(parts))}


def violations(graph):
    """Every broken rule, as a readable line."""
    problems = []
    for module, targets in graph.items():
        source = part_of(module)
        for target in sorted(targets - _parents(module)):
            destination = part_of(target)
            if destination == "core" or destination == source:
                continue
            if source == "core" and module not in ENTRY_POINTS:
                problems.append(f"core module {module} imports pipeline module {target}")
            elif source != "core":
                problems.append(f"pipeline {source}: {module} imports {target} of pipeline {destination}")
    # A package's __init__ is run by importing any module inside it, not a dependency of its own.
    edges = {m: {t for t in targets if t not in _parents(m)} for m, targets in graph.items()}
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in _cycles(edges)]
    return problems


def main():
    graph = import_graph()
    by_part = defaultdict(set)
    for module, targets in graph.items():
        by_part[part_of(module)].update(part_of(t) for t in targets if part_of(t) != part_of(module))
    print("what each part of course_lib imports (besides itself):")
    for part in ("core", *PIPELINES):
        if any(part_of(m) == part for m in graph):
            print(f"  {part:8} -> {', '.join(sorted(by_part[part])) or 'nothing'}")
    print(f"  (entry points allowed to load pipelines: {', '.join(ENTRY_POINTS)})")
    problems = violations(graph)
    for problem in problems:
        print("RULE BROKEN:", problem)
    print("layering rules hold" if not problems else f"{len(problems)} rule(s) broken")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
