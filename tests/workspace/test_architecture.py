"""The workspace's layers, checked on the source: imports point down, packages declare them, no circles.

The layers (README, "Layout"), bottom to top; a package may import only the packages listed for it in
:data:`ALLOWED` (all of them on a lower layer). Every import counts, at module level or hidden in a function, and
so does ``importlib.import_module("...")`` / ``python -m ...`` with a literal module name, so a dependency cannot
be dodged by importing late. Processes started by executable name are dependencies too, declared by hand (the
walk cannot see them): perception_eval starts tracker_node / avs_node (declared). One deliberate exception:
perception_nodes' ``perception-run`` starts whatever executable a graph file names, from the registry in
``perception_nodes.graph`` (data, as a launch file is), so it does not depend on the model nodes' packages.
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

LAYERS: dict[str, int] = {
    "perception_msgs": 0,  # messages (rosidl)
    "perception_common": 1,  # ROS-free helpers
    "perception_nodes": 2,  # node runtime and sensor nodes
    "trackgpt": 2,  # model libraries: plain PyTorch
    "avs": 2,
    "trackgpt_ros": 3,  # the model nodes
    "avs_ros": 3,
    "perception_eval": 4,  # metrics, datasets, worlds, bags, replay, benchmarks
    "training": 5,  # training of both models
    "perception_bringup": 5,  # launch files, graph YAMLs, instruction-pub, the demo
    "scripts": 6,  # the shipped models' recipe, evaluation and figures
    "launch_files": 6,  # launch/*.launch.py, the ros2 launch entry files
}
ALLOWED: dict[str, set[str]] = {
    "perception_msgs": set(),
    "perception_common": set(),
    "perception_nodes": {"perception_msgs", "perception_common"},
    "trackgpt": {"perception_common"},
    "avs": {"perception_common"},
    "trackgpt_ros": {"perception_msgs", "perception_common", "perception_nodes", "trackgpt"},
    "avs_ros": {"perception_msgs", "perception_common", "perception_nodes", "avs"},
    # perception_eval also starts the model nodes by executable name (replay-eval --graph, perception-bench)
    "perception_eval": {
        "perception_msgs", "perception_common", "perception_nodes", "trackgpt", "avs", "trackgpt_ros", "avs_ros",
    },
    "training": {"perception_common", "trackgpt", "avs", "perception_eval"},
    "perception_bringup": {  # the model nodes too: its graphs start them
        "perception_msgs", "perception_common", "perception_nodes", "trackgpt", "avs", "trackgpt_ros", "avs_ros",
        "perception_eval",
    },
    "scripts": {"perception_common", "trackgpt", "avs", "perception_eval", "training"},
    "launch_files": {"perception_bringup"},
}
# ROS packages: the ROS-free layers (helpers, model libraries) import none of them
ROS_MODULES = {
    "rclpy", "rcl_interfaces", "std_msgs", "sensor_msgs", "diagnostic_msgs", "std_srvs", "builtin_interfaces",
    "ament_index_python", "launch", "launch_ros", "launch_testing", "rosbag2_py", "cv_bridge", "perception_msgs",
}
ROS_FREE = {"perception_common", "trackgpt", "avs"}
# Python module -> the ROS package that declares it, for imports of ROS packages checked against package.xml
ROS_DECLARED = ROS_MODULES - {"launch_testing", "rosbag2_py", "cv_bridge"}  # optional: imported under try/except


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module, dotted
    path: Path
    line: int
    nested: bool  # inside a function or class body

    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def _python_roots() -> dict[str, Path]:
    """Top-level module name -> its folder, for every part of the tree the layers cover."""
    roots = {p.name: p / p.name for p in (REPO / "src").iterdir() if (p / p.name / "__init__.py").is_file()}
    roots.update({"training": REPO / "training", "scripts": REPO / "scripts", "launch_files": REPO / "launch"})
    return roots


def _module_name(path: Path, top: str, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [top, *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts).replace(".launch.py", "")


MODULE_STRING = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$")


def _imports_of(path: Path, module: str, is_package: bool) -> list[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(module, alias.name, path, child.lineno, nested))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join([*base, child.module] if child.module else base)
                else:
                    target = child.module or ""
                found.append(Import(module, target, path, child.lineno, nested))
                for alias in child.names:  # `from pkg import submodule`
                    found.append(Import(module, f"{target}.{alias.name}", path, child.lineno, nested))
            elif isinstance(child, ast.Call):
                found.extend(_dynamic_imports(child, module, path, nested))
            visit(child, inner)

    visit(tree, False)
    return found


def _dynamic_imports(call: ast.Call, module: str, path: Path, nested: bool) -> list[Import]:
    """``importlib.import_module("x.y")``, ``__import__("x")`` and ``[..., "-m", "x.y", ...]`` argument lists."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    out = []
    if name in ("import_module", "__import__") and call.args and isinstance(call.args[0], ast.Constant):
        value = call.args[0].value
        if isinstance(value, str) and MODULE_STRING.match(value):
            out.append(Import(module, value, path, call.lineno, True))
    for arg in call.args:
        if isinstance(arg, (ast.List, ast.Tuple)):
            values = [e.value if isinstance(e, ast.Constant) else None for e in arg.elts]
            for a, b in zip(values, values[1:]):
                if a == "-m" and isinstance(b, str) and MODULE_STRING.match(b):
                    out.append(Import(module, b, path, call.lineno, True))
    return out


def collect() -> tuple[dict[str, str], list[Import]]:
    """``(module -> top-level package, every import)`` over src/, training/, scripts/ and launch/."""
    modules: dict[str, str] = {}
    imports: list[Import] = []
    for top, root in _python_roots().items():
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            module = _module_name(path, top, root)
            modules[module] = top
            imports.extend(_imports_of(path, module, path.name == "__init__.py"))
    return modules, imports


MODULES, IMPORTS = collect()


def _layer_violations(imports: list[Import]) -> list[str]:
    bad = []
    for imp in imports:
        src_top, dst_top = imp.source.split(".")[0], imp.target.split(".")[0]
        if dst_top == src_top or dst_top not in LAYERS:
            if src_top in ROS_FREE and dst_top in ROS_MODULES:
                bad.append(f"{imp.where()}: {imp.source} (ROS-free) imports the ROS package {imp.target}")
            continue
        if dst_top not in ALLOWED[src_top]:
            how = "inside a function" if imp.nested else "at module level"
            direction = "up" if LAYERS[dst_top] >= LAYERS[src_top] else "outside its declared dependencies"
            bad.append(f"{imp.where()}: {imp.source} imports {imp.target} {how} ({direction})")
    return bad


def _cycles(imports: list[Import], modules: set[str]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a circle of imports."""
    graph: dict[str, set[str]] = defaultdict(set)
    for imp in imports:
        if imp.target in modules and imp.target != imp.source:
            graph[imp.source].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(modules):
        if v not in index:
            strong(v)
    return found


def test_the_layers_are_a_one_way_order():
    for pkg, deps in ALLOWED.items():
        for dep in deps:
            assert LAYERS[dep] < LAYERS[pkg], f"{pkg} may import {dep}, which is not on a lower layer"


def test_every_python_package_of_src_has_a_layer():
    assert set(_python_roots()) - {"training", "scripts", "launch_files"} <= set(LAYERS)
    packages = {p.name for p in (REPO / "src").iterdir() if (p / "package.xml").is_file()}
    assert packages == set(LAYERS) - {"training", "scripts", "launch_files"}


def test_no_import_points_up_a_layer_or_outside_the_declared_dependencies():
    assert len(IMPORTS) > 500, "the import walk found almost nothing: the tree layout changed"
    bad = _layer_violations(IMPORTS)
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_there_is_no_circle_of_imports():
    cycles = _cycles(IMPORTS, set(MODULES))
    assert not cycles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def _declared(package: str) -> set[str]:
    root = ET.parse(REPO / "src" / package / "package.xml").getroot()
    tags = ("depend", "exec_depend", "build_depend", "build_export_depend")
    return {e.text.strip() for tag in tags for e in root.iter(tag) if e.text}


@pytest.mark.parametrize("package", sorted(p for p in LAYERS if (REPO / "src" / p / "setup.py").is_file()))
def test_package_xml_declares_every_workspace_and_ros_package_it_imports(package):
    declared = _declared(package)
    imported = {i.target.split(".")[0] for i in IMPORTS if i.source.split(".")[0] == package}
    needed = (imported & (set(LAYERS) | ROS_DECLARED)) - {package}
    assert needed <= declared, f"src/{package}/package.xml does not declare {sorted(needed - declared)}"
    assert declared & set(LAYERS) <= ALLOWED[package], (
        f"src/{package}/package.xml declares workspace packages above or beside it: "
        f"{sorted((declared & set(LAYERS)) - ALLOWED[package])}"
    )


# ------------------------------------------------------------- the checker itself catches what it must


def _fake(source: str, target: str, nested: bool = False) -> Import:
    return Import(source, target, REPO / "src", 1, nested)


def test_checker_flags_an_upward_import_even_inside_a_function():
    bad = _layer_violations([_fake("perception_common.demo", "perception_eval.metrics", nested=True)])
    assert len(bad) == 1 and "inside a function" in bad[0] and "(up)" in bad[0]


def test_checker_flags_a_sideways_import_and_ros_in_a_model_library():
    assert _layer_violations([_fake("trackgpt.model", "avs.model")])
    assert "ROS-free" in _layer_violations([_fake("avs.model", "rclpy.node")])[0]
    assert not _layer_violations([_fake("trackgpt_ros.tracker_node", "trackgpt.tracker")])


def test_checker_finds_a_circle_through_a_late_import(tmp_path):
    a = tmp_path / "a.py"
    a.write_text("from pkg.b import x\n")
    b = tmp_path / "b.py"
    b.write_text("def f():\n    from pkg.a import y\n")
    imports = _imports_of(a, "pkg.a", False) + _imports_of(b, "pkg.b", False)
    assert any(i.nested for i in imports)
    assert _cycles(imports, {"pkg.a", "pkg.b"}) == [["pkg.a", "pkg.b"]]


def test_checker_reads_relative_dynamic_and_dash_m_imports(tmp_path):
    f = tmp_path / "mod.py"
    f.write_text(
        "import importlib\nfrom . import sib\nfrom ..up import z\n"
        "def g():\n    importlib.import_module('avs.model')\n    run(['python', '-m', 'perception_eval.replay'])\n"
    )
    targets = {i.target for i in _imports_of(f, "trackgpt.sub.mod", False)}
    assert {"trackgpt.sub", "trackgpt.sub.sib", "trackgpt.up", "avs.model", "perception_eval.replay"} <= targets
