"""The package's structure: every module is in docs/architecture.md, none is too long, and the imports form no
cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "zoo"
#: no module longer than this (docs/architecture.md: "none over about 500 lines")
MAX_LINES = 550


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        if "sample_zoo" in p.parts:
            continue
        parts = p.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _from_module(m: str, p: Path, node: ast.ImportFrom) -> str:
    """The absolute name of the module a ``from ... import`` in module ``m`` (file ``p``) imports from."""
    base = m if p.name == "__init__.py" else m.rsplit(".", 1)[0]
    for _ in range(max(node.level - 1, 0)):
        base = base.rsplit(".", 1)[0]
    return (f"{base}.{node.module}" if node.module else base) if node.level else node.module


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, at module level or inside functions (lazy imports count)."""
    mods = _modules()
    graph = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                mod = _from_module(m, p, node)
                for a in node.names:
                    target = f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod
                    if target in mods and target != m:
                        graph[m].add(target)
            elif isinstance(node, ast.Import):
                graph[m].update(a.name for a in node.names if a.name in mods and a.name != m)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_detector_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_every_module_is_in_the_architecture_doc():
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [str(p.relative_to(ROOT)) for p in _modules().values() if f"`{p.relative_to(ROOT).as_posix()}`" not in doc]
    assert not missing, f"add these modules to docs/architecture.md: {missing}"


def test_no_module_is_too_long():
    long = {str(p.relative_to(ROOT)): n for p in _modules().values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"split these modules by concern (docs/architecture.md): {long}"


def _imported_names(m: str, p: Path) -> list[tuple[str, str]]:
    """(module, name) of every ``from zoo.x import name`` and every ``x.name`` attribute of an imported zoo
    module in module ``m``."""
    mods = _modules()
    tree = ast.parse(p.read_text(encoding="utf-8"))
    out, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = _from_module(m, p, node)
            for a in node.names:
                if f"{mod}.{a.name}" in mods:
                    aliases[a.asname or a.name] = f"{mod}.{a.name}"
                elif mod in mods:
                    out.append((mod, a.name))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in mods and a.asname:
                    aliases[a.asname] = a.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            out.append((aliases[node.value.id], node.attr))
    return out


def test_no_module_uses_another_modules_private_names():
    bad = sorted({f"{m} uses {owner}.{name}" for m, p in _modules().items()
                  for owner, name in _imported_names(m, p)
                  if owner != m and name.startswith("_") and not name.startswith("__")})
    assert not bad, f"make these names public in the module that owns them (or merge the modules): {bad}"


#: the modules that train, package and publish a release: they never need matplotlib or the analysis layer
BUILD_PATH = ("zoo.build", "zoo.build_folder", "zoo.shard_build", "zoo.chunks", "zoo.release", "zoo.executors",
              "zoo.plan", "zoo.claims", "zoo.train", "zoo.publish", "zoo.card", "zoo.metadata", "zoo.reference")


def test_the_build_path_imports_no_figures_or_analysis():
    graph = import_graph()
    for start in BUILD_PATH:
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(graph[m])
        bad = sorted(m for m in seen if m == "zoo.figures" or m.startswith(("zoo.analysis", "zoo.explore")))
        assert not bad, f"{start} reaches {bad}: pass drawing in as a function (release.PictureWriter)"


#: what writes a release (temp file, fsync, rename, fault points of the crash tests)
WRITERS = {"atomic_path", "atomic_write_bytes", "atomic_write_text", "fault_point", "faults", "publish"}
#: the loader's modules, and the reading functions of the format modules
READ_MODULES = ("zoo.api", "zoo.sources", "zoo.hub_source", "zoo.cache")
READ_FUNCTIONS = {"zoo.store": ("read_", "open_"), "zoo.manifest": ("read_", "verify_", "file_matches", "release_file")}


def _names_in(node) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


def test_reading_a_zoo_writes_nothing():
    mods = _modules()
    trees = {m: ast.parse(mods[m].read_text(encoding="utf-8")) for m in (*READ_MODULES, *READ_FUNCTIONS)}
    # sources may wait for a writer's switch in progress (publish.wait_*), which writes nothing
    bad = [f"{m}: {n}" for m in READ_MODULES for n in sorted((_names_in(trees[m]) - {"publish"}) & WRITERS)]
    for m, prefixes in READ_FUNCTIONS.items():
        stamps = [n for n in trees[m].body if isinstance(n, ast.ClassDef) and n.name == "VerifiedStamps"]
        functions = [f for f in trees[m].body if isinstance(f, ast.FunctionDef) and f.name.startswith(prefixes)]
        functions += [f for c in stamps for f in c.body if isinstance(f, ast.FunctionDef)]  # the readers' stamps
        bad += [f"{m}.{f.name}: {n}" for f in functions for n in sorted(_names_in(f) & WRITERS)]
    assert not bad, f"the read path must not write a release nor run fault hooks: {bad}"
