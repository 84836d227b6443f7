"""The house rules a linter cannot check, read from the source's import graph.

docs/architecture.md: lower layers never import higher ones (at module level or inside a function),
torch stays in ``hemotwin.vision``, the clinical layers prognosis and monitoring stand on the
foundations alone, and no module imports another module's private names. ruff checks the rest
(pyproject.toml: docstrings, parameter counts, private member access, banned imports).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "hemotwin"

#: Layer of each top-level part of the package; a module may import its own layer or lower ones,
#: and only the parts listed in ALLOWED where that is narrower.
LAYER = {
    "hemotwin": 0, "errors": 0, "taxonomy": 0, "io": 0,
    "twin": 1,
    "vision": 2,
    "diagnosis": 3, "prognosis": 3, "monitoring": 3,
    "cli": 4, "demo": 4, "__main__": 4,
}
FOUNDATIONS = {"hemotwin", "errors", "taxonomy", "io"}
#: Narrower rules (ARCHITECTURE): prognosis and monitoring need neither the twin nor torch.
ALLOWED = {
    "prognosis": FOUNDATIONS | {"prognosis"},
    "monitoring": FOUNDATIONS | {"monitoring", "prognosis"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _part(module: str) -> str:
    """Top-level part of a ``hemotwin.…`` module name (``hemotwin`` itself for the package)."""
    bits = module.split(".")
    return bits[1] if len(bits) > 1 else "hemotwin"


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) of every import in a file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod, [a.name for a in node.names]))
    return out


FILES = sorted(PACKAGE.rglob("*.py"))


def test_the_package_is_found():
    # A wrong SRC would make every rule below pass vacuously.
    assert len(FILES) > 50 and (PACKAGE / "taxonomy.py") in FILES


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_layers_import_only_downward(path: Path):
    me = _module_name(path)
    mine = _part(me)
    bad = []
    for line, mod, _names in _imports(path):
        if mod == "torch" or mod.startswith("torch."):
            if mine != "vision":
                bad.append(f"line {line}: torch outside hemotwin.vision")
            continue
        if not (mod == "hemotwin" or mod.startswith("hemotwin.")):
            continue
        theirs = _part(mod)
        if theirs not in LAYER:
            bad.append(f"line {line}: {mod} is in no layer (add it to LAYER and docs/architecture.md)")
        elif LAYER[theirs] > LAYER[mine]:
            bad.append(f"line {line}: {mine} imports the higher layer {mod}")
        elif mine in ALLOWED and theirs not in ALLOWED[mine]:
            bad.append(f"line {line}: {mine} may import only {sorted(ALLOWED[mine])}, not {mod}")
    assert not bad, f"{me}: " + "; ".join(bad)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_private_names_across_modules(path: Path):
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    bad = []
    for line, mod, names in _imports(path):
        if not mod.startswith("hemotwin"):
            continue
        # A private module (``_iscn``, ``_common``) serves its own package only.
        private_mod = [p for p in mod.split(".") if p.startswith("_") and not p.startswith("__")]
        if private_mod and not mod.rpartition(".")[0].startswith(package) and \
                not package.startswith(mod.rpartition(".")[0]):
            bad.append(f"line {line}: private module {mod} from outside its package")
        for n in names:
            target = f"{mod}.{n}"
            if n.startswith("_") and not n.startswith("__"):
                # Importing a private submodule of one's own package is fine; a private name is not.
                if (PACKAGE.parent / Path(*target.split("."))).with_suffix(".py").exists() and \
                        mod.startswith(package.split(".")[0]) and package.startswith(mod):
                    continue
                bad.append(f"line {line}: private name {n} from {mod}")
    assert not bad, f"{me}: " + "; ".join(bad)


def test_the_rules_catch_a_violation(tmp_path):
    # The checks must be able to fail: a twin module importing vision and a private name is caught.
    fake = PACKAGE / "twin" / "zz_architecture_probe.py"
    try:
        fake.write_text("from hemotwin.vision.detect import _check\nimport torch\n")
        with pytest.raises(AssertionError, match="higher layer"):
            test_layers_import_only_downward(fake)
        with pytest.raises(AssertionError, match="private name _check"):
            test_no_private_names_across_modules(fake)
    finally:
        fake.unlink()


SCRIPTS = sorted((SRC.parent / "benchmarks").rglob("*.py")) + sorted((SRC.parent / "scripts").rglob("*.py"))


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(SRC.parent)))
def test_benchmarks_and_scripts_use_public_names(path: Path):
    # Benchmarks and scripts are users of the library: what they need must be public.
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bad = [f"line {n.lineno}: {a.name} from {n.module}" for n in ast.walk(tree)
           if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("hemotwin")
           for a in n.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, "; ".join(bad)
