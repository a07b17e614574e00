"""The product's shape stays easy to see: imports run one way (no cycle between modules, nor between packages at
any depth), no folder holds more than 15 modules, no module passes 400 lines. Imports inside functions count: a
cycle hidden in a function body is still a cycle. The checks run first on small trees that break each rule, so a
checker that stopped seeing cycles would fail here too."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("agents", "common", "devtools", "edge_hosts", "fleet", "infra", "lab")
MAX_MODULES, MAX_LINES = 15, 400


def modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted name -> file of every module below the given top-level packages."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(found: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (at any depth of its code), resolved to the longest known name."""
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in found.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1], *filter(None, [base])])
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in found:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one node (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for node in sorted(set(graph) | {n for targets in graph.values() for n in targets}):
        if node not in index:
            visit(node)
    return out


def package_graph(graph: dict[str, set[str]], depth: int) -> dict[str, set[str]]:
    """The module graph seen at package depth `depth` (1: top-level packages): edges between distinct packages that
    share their first depth-1 parts (siblings), so a cycle between sibling packages shows at every level."""
    def at(name: str) -> str:
        return ".".join(name.split(".")[:depth])

    folded: dict[str, set[str]] = defaultdict(set)
    for source, targets in graph.items():
        for target in targets:
            a, b = at(source), at(target)
            siblings = a.split(".")[:depth - 1] == b.split(".")[:depth - 1]
            if a != b and siblings and len(source.split(".")) > depth - 1 and len(target.split(".")) > depth - 1:
                folded[a].add(b)
    return folded


def import_cycles(root: Path, packages: tuple[str, ...]) -> list[str]:
    graph = imports(modules(root, packages))
    found = [f"modules: {' <-> '.join(group)}" for group in cycles(graph)]
    for depth in (1, 2, 3):
        found += [f"packages: {' <-> '.join(group)}" for group in cycles(package_graph(graph, depth))]
    return found


def crowded_folders(root: Path, packages: tuple[str, ...]) -> list[str]:
    folders = defaultdict(int)
    for path in modules(root, packages).values():
        if path.name != "__init__.py":
            folders[path.parent.relative_to(root)] += 1
    return [f"{folder}: {count} modules" for folder, count in sorted(folders.items()) if count > MAX_MODULES]


def long_modules(root: Path, packages: tuple[str, ...]) -> list[str]:
    lengths = {path: len(path.read_text().splitlines()) for path in modules(root, packages).values()}
    return [f"{path.relative_to(root)}: {n} lines" for path, n in sorted(lengths.items()) if n > MAX_LINES]


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_checks_see_what_breaks_the_rules(tmp_path):
    tree = _tree(tmp_path, {
        "a/__init__.py": "", "a/one.py": "def f():\n    from a import two\n", "a/two.py": "from a.one import f\n",
        "b/__init__.py": "", "b/low/__init__.py": "", "b/high/__init__.py": "",
        "b/low/x.py": "from b.high.y import Y\n", "b/high/y.py": "Y = 1\n", "b/high/z.py": "from b.low import x\n",
        "c/__init__.py": "", "c/p.py": "from d.q import Q\n", "d/__init__.py": "", "d/q.py": "Q = 1\n",
        "d/r.py": "import c.p\n", **{f"e/m{i}.py": "" for i in range(16)}, "f/big.py": "x = 1\n" * 401})
    found = import_cycles(tree, ("a", "b", "c", "d"))
    assert "modules: a.one <-> a.two" in found  # through an import in a function body
    assert "packages: b.high <-> b.low" in found  # sibling packages, no module cycle
    assert "packages: c <-> d" in found
    assert not [line for line in found if "modules: b." in line or "modules: c" in line]
    assert crowded_folders(tree, ("e",)) == ["e: 16 modules"]
    assert long_modules(tree, ("f",)) == ["f/big.py: 401 lines"]


def test_imports_run_one_way():
    assert import_cycles(ROOT, PRODUCT) == []


def test_no_folder_over_15_modules():
    assert crowded_folders(ROOT, PRODUCT) == []


def test_no_module_over_400_lines():
    assert long_modules(ROOT, PRODUCT) == []


def test_edge_hosts_packages_import_only_the_layers_below():
    """The order edge_hosts/__init__.py states: a package imports only packages before it."""
    order = ["inventory", "access", "facts", "artifacts", "engine", "preflight", "steps", "operations", "bootstrap",
             "tasks"]
    graph = package_graph(imports(modules(ROOT, ("edge_hosts",))), 2)
    upward = [f"{a} -> {b}" for a, targets in graph.items() for b in targets
              if a.count(".") == b.count(".") == 1 and order.index(b.split(".")[1]) > order.index(a.split(".")[1])]
    assert upward == []
    assert all(name in (ROOT / "edge_hosts" / "__init__.py").read_text() for name in order)
