"""The house rules, computed from the real imports of every module under ``studio/`` (lazy, function-level ones too).

- layers point one way: ``ui -> engine -> libraries``; the engine never imports gradio, ``studio.ui`` or the CLI;
  ``studio.config`` and ``studio.paths`` never import the engine or the UI;
- no import cycles between modules;
- no private name (``_x``) of one module is used by another;
- ``studio/ui/api.py`` imports no tab: endpoints call the engine, not another page's handlers;
- importing any UI module never imports torch (the page is up in seconds).

Each rule is also run on a small made-up graph that breaks it, so a checker that stopped seeing violations fails here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STUDIO = ROOT / "studio"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in STUDIO.rglob("*.py")}


def _resolve_from(node: ast.ImportFrom, current: str, is_pkg: bool) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".") if is_pkg else current.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(imported module, imported name or '', line) for every import in the file, at any depth."""
    out = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve_from(node, name, path.name == "__init__.py")
            for a in node.names:
                sub = f"{mod}.{a.name}"
                out.append((sub, "", node.lineno) if sub in modules else (mod, a.name, node.lineno))
    return out


def import_graph() -> tuple[dict[str, set[str]], list[tuple[str, str, str, int]]]:
    """studio-internal edges (module -> modules), and every import as (importer, module, name, line)."""
    modules = all_modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    flat = []
    for name, path in modules.items():
        for mod, item, line in imports_of(name, path, modules):
            flat.append((name, mod, item, line))
            if mod in modules and mod != name and not mod.endswith("__init__"):
                edges[name].add(mod)
    return edges, flat


# -- the checkers ------------------------------------------------------------------------------------------------------------


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


FORBIDDEN = (  # (importer prefix, imported prefix, why)
    ("studio.engine", "gradio", "the engine returns plain data; only studio.ui knows gradio"),
    ("studio.engine", "studio.ui", "layers point one way: ui -> engine"),
    ("studio.engine", "studio.commands", "the CLI calls the engine, never the reverse"),
    ("studio.engine", "studio.cli", "the CLI calls the engine, never the reverse"),
    ("studio.config", "studio.engine", "config is read by everyone and imports no engine"),
    ("studio.config", "studio.ui", "config is read by everyone and imports no UI"),
    ("studio.paths", "studio.engine", "paths is a leaf"),
    ("studio.paths", "studio.ui", "paths is a leaf"),
    ("studio.ui.api", "studio.ui.tabs", "the API calls the engine, not another page's handlers"),
    ("studio.ui.api", "studio.ui.panels", "the API calls the engine, not another page's handlers"),
)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_violations(flat: list[tuple[str, str, str, int]]) -> list[str]:
    bad = []
    for importer, mod, _, line in flat:
        for src, dst, why in FORBIDDEN:
            if _under(importer, src) and _under(mod, dst):
                bad.append(f"{importer}:{line} imports {mod}: {why}")
    return bad


def private_imports(flat: list[tuple[str, str, str, int]], modules: dict[str, Path]) -> list[str]:
    """``from studio.x import _name`` across modules, and ``module._name`` on an imported studio module."""
    bad = [f"{importer}:{line} imports private {mod}.{item}" for importer, mod, item, line in flat
           if item.startswith("_") and not item.startswith("__") and mod.startswith("studio") and mod != importer]
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("studio"):
                for a in node.names:
                    if f"{node.module}.{a.name}" in modules:
                        bound[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("studio") and a.asname:
                        bound[a.asname] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                bad.append(f"{name}:{node.lineno} uses private {bound[node.value.id]}.{node.attr}")
    return bad


# -- the rules on the real code ----------------------------------------------------------------------------------------------


def test_no_import_cycles():
    edges, _ = import_graph()
    assert find_cycles(edges) == []


def test_layers_point_one_way():
    _, flat = import_graph()
    assert layer_violations(flat) == []


def test_no_private_names_across_modules():
    _, flat = import_graph()
    assert private_imports(flat, all_modules()) == []


def test_graph_sees_the_real_layout():
    """The walk must see the engine's subsystems and the lazy imports, or every rule above passes vacuously."""
    edges, flat = import_graph()
    assert len(edges) > 60
    assert "studio.engine.train.sft" in edges["studio.engine.train.runner"]  # a lazy, function-level import
    assert any(_under(m, "studio.engine") for m in edges["studio.ui.tabs.train"])
    assert any(mod == "gradio" for importer, mod, _, _ in flat if importer == "studio.ui.app")


def test_importing_the_ui_never_imports_torch():
    code = ("import sys, importlib, pkgutil, studio.ui as u\n"
            "for m in pkgutil.walk_packages(u.__path__, 'studio.ui.'):\n"
            "    importlib.import_module(m.name)\n"
            "print(sorted(k for k in ('torch', 'transformers', 'peft', 'trl') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


# -- the checkers catch what they should -------------------------------------------------------------------------------------


def test_checkers_flag_made_up_violations(tmp_path):
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    flat = [("studio.engine.train.sft", "gradio", "", 3), ("studio.config", "studio.engine.train.rewards", "check", 9),
            ("studio.ui.api", "studio.ui.tabs.chat", "", 4), ("studio.ui.tabs.chat", "studio.engine.generate", "", 1)]
    assert len(layer_violations(flat)) == 3
    mod = tmp_path / "m.py"
    mod.write_text("from studio.engine import rundir\nrundir._hidden()\n", encoding="utf-8")
    (tmp_path / "rundir.py").write_text("def _hidden():\n    return _hidden\n", encoding="utf-8")
    flat = [("studio.x", "studio.engine.data.load", "_render", 2)]
    found = private_imports(flat, {"studio.x": mod, "studio.engine.rundir": tmp_path / "rundir.py"})
    assert len(found) == 2, found
