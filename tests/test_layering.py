"""The layers, checked by walking every import (ast): the model never imports the service or
the command line; the core of each package never imports its benchmarks. A test that plants a
forbidden import in a copy checks that the walk would catch one."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# folder in the checkout -> its name under the import root
PACKAGES = {"model": "tracekws.model", "service": "tracekws.service"}
# (importer prefix, imported prefix, why)
FORBIDDEN = [
    ("tracekws.model", "tracekws.service", "the model never imports the service"),
    ("tracekws.model", "tracekws.cli", "the model never imports the command line"),
    ("tracekws.service", "tracekws.cli", "the service never imports the command line"),
]
CORES = {"tracekws.model": "tracekws.model.bench", "tracekws.service": "tracekws.service.bench"}


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    parts[0] = PACKAGES[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, name: str) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in the file, relative ones resolved."""
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return out


def _under(mod: str, prefix: str) -> bool:
    return mod == prefix or mod.startswith(prefix + ".")


def violations(root: Path = ROOT) -> list[str]:
    found: dict[tuple[str, int], str] = {}  # one finding per import statement
    for folder in PACKAGES:
        for path in sorted((root / folder).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            name = module_name(path, root)
            rules = list(FORBIDDEN)
            for pkg, bench in CORES.items():
                if _under(name, pkg) and not _under(name, bench):
                    rules.append((pkg, bench, f"the core of {pkg} never imports its benchmarks"))
            for line, mod in imported_modules(path, name):
                for src, dst, why in rules:
                    # bare `model` / `service` would import whatever folder sits in the cwd
                    bare = mod.split(".")[0] in PACKAGES
                    if (_under(name, src) and _under(mod, dst)) or bare:
                        what = "a bare import root" if bare else why
                        where = f"{path.relative_to(root)}:{line}"
                        found.setdefault((where, line), f"{where} imports {mod} ({what})")
                        break
    return sorted(found.values())


def test_no_layer_is_crossed():
    assert violations() == []


def test_a_planted_upward_import_is_caught(tmp_path):
    for folder in PACKAGES:
        shutil.copytree(ROOT / folder, tmp_path / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "static"))
    (tmp_path / "model" / "rules" / "planted.py").write_text(
        "from ...service.settings import Settings\n")
    (tmp_path / "model" / "planted2.py").write_text("from .bench.infer import bench_infer\n")
    (tmp_path / "service" / "planted3.py").write_text("import tracekws.cli\n")
    (tmp_path / "service" / "planted4.py").write_text("from model.pipeline import KWSModel\n")
    got = violations(tmp_path)
    assert len(got) == 4, got
    assert any("rules/planted.py:1 imports tracekws.service.settings" in v for v in got)
    assert any("planted2.py:1 imports tracekws.model.bench" in v for v in got)
    assert any("planted3.py:1 imports tracekws.cli" in v for v in got)
    assert any("planted4.py:1 imports model.pipeline (a bare import root)" in v for v in got)
