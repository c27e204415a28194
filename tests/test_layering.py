"""The package layers: each imports only from those below it, so there are no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import squeezer

# Bottom to top; a package may import itself and anything earlier in this list.
ORDER = [
    "errors",
    "config",
    "core",
    "data",
    "layers",
    "models",
    "surgery",
    "deploy",
    "analysis",
    "train",
    "conversion",
    "pruning",
    "quantization",
    "factorization",
    "compact",
    "dynamic",
    "coding",
    "distillation",
    "pipeline",
    "automation",
    "report",
    "cli",
]
ROOT = Path(squeezer.__file__).parent


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("squeezer."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("squeezer.")}
    return found


def test_every_package_is_placed() -> None:
    here = {p.stem if p.is_file() else p.name for p in ROOT.iterdir() if not p.name.startswith("_")}
    here = {n for n in here if (ROOT / n).is_dir() or (ROOT / f"{n}.py").is_file()} - {"py"}
    assert here <= set(ORDER), here - set(ORDER)


def test_no_import_from_a_lower_package_to_a_higher_one() -> None:
    rank = {name: i for i, name in enumerate(ORDER)}
    wrong = []
    for name in ORDER:
        files = (
            [ROOT / f"{name}.py"] if (ROOT / f"{name}.py").exists() else (ROOT / name).rglob("*.py")
        )
        for path in files:
            for target in _imports(path):
                if target in rank and rank[target] > rank[name]:
                    wrong.append(f"{path.relative_to(ROOT)} imports squeezer.{target}")
    assert not wrong, "\n".join(wrong)
