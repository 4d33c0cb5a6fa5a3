"""The package's shape: no import cycle, and pytest imported only by the modules that are the pytest side.

Read from the source (every import statement, function-local ones included), not by importing it.
"""

import ast
import io
import subprocess
import sys
import tokenize

from support.paths import ROOT

PACKAGE = ROOT / "pytest_meshperf"


# The pytest side: plugin.py, hookspecs.py and the session package (hooks, the session, collection, fixtures, items, xdist's
# scheduler).  Everything else (cluster, spec, plan, transport, control, agent, tools, measure, verdicts, results,
# reports, CLI) works without pytest.
def is_pytest_side(name):
    return name in ("plugin", "hookspecs") or name == "session" or name.startswith("session.")


def modules():
    """module name (dotted, without the package) -> its path."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name, path, known):
    """The package modules ``name`` imports, and the third-party top-level names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    ours, theirs = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".") if package else []
            base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
            target = ".".join([p for p in base if p] + ([node.module] if node.module else []))
            for alias in node.names:
                candidate = (target + "." if target else "") + alias.name
                ours.add(candidate if candidate in known else target)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.startswith("pytest_meshperf"):
                target = module[len("pytest_meshperf."):] if "." in module else ""
                for alias in node.names:
                    candidate = (target + "." if target else "") + alias.name
                    ours.add(candidate if candidate in known else target)
            else:
                theirs.add(module.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top == "pytest_meshperf":
                    ours.add(alias.name[len("pytest_meshperf."):])
                else:
                    theirs.add(top)
    return {m for m in ours if m in known and m != name}, theirs


def test_no_import_cycle():
    known = modules()
    graph = {name: imports(name, path, known)[0] for name, path in known.items()}
    cycles, state = [], {}

    def visit(name, trail):
        state[name] = "open"
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                cycles.append(trail[trail.index(other):] + [other])
            elif other not in state:
                visit(other, trail + [other])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_only_the_pytest_side_imports_pytest():
    known = modules()
    importing = {name for name, path in known.items() if imports(name, path, known)[1] & {"pytest", "_pytest", "xdist"}}
    assert {name for name in importing if not is_pytest_side(name)} == set()
    assert "session.mesh_session" in importing   # the walk sees the pytest side's imports


def test_the_meshperf_command_imports_no_pytest():
    code = "import sys, pytest_meshperf.cli; print(sorted(m for m in ('pytest', '_pytest', 'xdist', 'paramiko', 'fabric') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


MAX_LINES = 450
# The data flow, as the order in which packages may import each other: a module imports only from its own
# package or from packages of a lower rank (inventory -> plan -> runs -> measurements -> results -> verdicts
# -> reports; the pytest side and the command on top).
RANKS = {
    "": 0, "errors": 0, "vocabulary": 0, "data": 0,
    "yamlfile": 1,
    "tools": 1,
    "agent": 2, "cluster": 2, "spec": 2,
    "plan": 3, "transport": 3,
    "testbed": 4, "control": 4, "measure": 4,
    "results": 5,
    "verdicts": 6,
    "reports": 7,
    "session": 8, "hookspecs": 8,
    "plugin": 9, "cli": 9, "compare": 9,
}


def _package(name):
    return name.split(".")[0]


def test_no_module_is_over_the_size_limit():
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {name: lines for name, lines in sizes.items() if lines > MAX_LINES} == {}


def test_every_module_opens_with_its_job():
    silent = [name for name, path in modules().items()
              if not ast.get_docstring(ast.parse(path.read_text())) and path.read_text().strip()]
    assert silent == []


def test_imports_follow_the_data_flow():
    known = modules()
    assert {_package(name) for name in known} <= set(RANKS), "a new package needs its rank in RANKS"
    backwards = []
    for name, path in known.items():
        for other in imports(name, path, known)[0]:
            if _package(other) != _package(name) and RANKS[_package(other)] >= RANKS[_package(name)]:
                backwards.append(f"{name} -> {other}")
    assert backwards == []


def test_the_node_side_imports_only_what_the_bundle_ships():
    # transport/bundle.py ships __init__.py, agent/ and tools/: the agent must not need anything else on a node.
    known = modules()
    outside = [f"{name} -> {other}" for name, path in known.items() if _package(name) in ("agent", "tools")
               for other in imports(name, path, known)[0] if _package(other) not in ("", "agent", "tools")]
    assert outside == []


def test_a_function_local_import_says_why():
    """Imports belong at the top; one inside a function is for start-up cost or an optional dependency, and a
    comment on its line says which (a cycle it might hide is caught above: the graph counts these imports too)."""
    unexplained = []
    for name, path in sorted(modules().items()):
        text = path.read_text()
        commented = {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(text).readline)
                     if tok.type == tokenize.COMMENT}
        for function in ast.walk(ast.parse(text)):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and not (
                        set(range(node.lineno, node.end_lineno + 1)) & commented):
                    unexplained.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert unexplained == [], "function-local imports without a comment saying why: " + ", ".join(unexplained)


def test_the_tests_mirror_the_packages():
    """A test file about one package sits in tests/<package>/; helpers live in tests/support/ alone."""
    packages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    tests = ROOT / "tests"
    folders = {path.name for path in tests.iterdir() if path.is_dir() and not path.name.startswith((".", "__"))}
    assert folders - {"support", "data"} <= packages, folders - packages
    for path in tests.rglob("*.py"):
        relative = path.relative_to(tests)
        if relative.parts[0] not in ("support", "data") and path.name != "conftest.py":
            assert path.name.startswith("test_"), f"{relative}: a helper belongs in tests/support/"


# Runs as bare source on any python3, to report an old one's version: no annotations it could choke on.
UNANNOTATED = {"agent.boot"}


def public_functions(tree):
    """(qualified name, function node) of every public function and method (of a public class) in a module."""
    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef) and not child.name.startswith("_"):
                yield from walk(child, prefix + child.name + ".")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                dunder = child.name.startswith("__") and child.name.endswith("__")
                if dunder or not child.name.startswith("_"):
                    yield prefix + child.name, child
    yield from walk(tree, "")


def test_every_public_function_is_annotated():
    missing = []
    for name, path in sorted(modules().items()):
        if name in UNANNOTATED:
            continue
        for qualname, function in public_functions(ast.parse(path.read_text())):
            arguments = function.args.posonlyargs + function.args.args + function.args.kwonlyargs
            if arguments and arguments[0].arg in ("self", "cls"):
                arguments = arguments[1:]
            unannotated = [a.arg for a in arguments if a.annotation is None]
            unannotated += [f"*{a.arg}" for a in (function.args.vararg, function.args.kwarg)
                            if a is not None and a.annotation is None]
            if function.returns is None and function.name != "__init__":
                unannotated.append("return")
            if unannotated:
                missing.append(f"{name}.{qualname} ({', '.join(unannotated)})")
    assert missing == [], f"{len(missing)} public functions lack annotations: " + "; ".join(missing)
