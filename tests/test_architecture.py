"""The layers of the package (docs/architecture.md): every import points down or sideways, never up, and no core
module imports the ToyWorld plugin (it registers itself through hifilight.plugins)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hifilight"
LAYERS = {  # keep in step with docs/architecture.md
    0: {
        "errors",
        "io",
        "prompts",
        "validation",
        "limits",
        "masking",
        "conditioning",
        "viz",
        "plugins",
        "batcher",
        "__init__",
    },
    1: {"artifacts", "token_embeddings", "subjects"},
    2: {"models"},
    3: {"perception"},
    4: {"data"},
    5: {"sampling", "export"},
    6: {"training", "evaluation", "options", "guide_builder"},
    7: {"toyworld", "api", "serving"},
    8: {"commands", "cli"},
}
LAYER = {unit: level for level, units in LAYERS.items() for unit in units}
PLUGIN, MAY_IMPORT_PLUGIN = "toyworld", {"toyworld", "commands", "cli"}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "hifilight":
            found |= {_unit(node.module)} if node.module != "hifilight" else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {_unit(a.name) for a in node.names if a.name.startswith("hifilight.")}
    return found


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        yield path, parts[0] if len(parts) > 1 else parts[0]


def test_every_module_has_a_layer():
    assert {unit for _, unit in _modules()} <= set(LAYER), "add new modules to LAYERS and docs/architecture.md"


def test_imports_point_down_and_no_core_module_imports_the_plugin():
    wrong = []
    for path, unit in _modules():
        for target in _imports(path) - {unit}:
            if target not in LAYER:
                continue  # e.g. `from hifilight import __version__`
            if LAYER[target] > LAYER[unit] or (target == PLUGIN and unit not in MAY_IMPORT_PLUGIN):
                wrong.append(f"{path.relative_to(PACKAGE.parent)} imports hifilight.{target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_command_imports_another():
    commands = PACKAGE / "commands"
    names = {p.stem for p in commands.glob("*.py")} - {"__init__", "common"}
    wrong = []
    for path in commands.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hifilight.commands."):
                other = node.module.split(".")[2]
                if other in names and other != path.stem:
                    wrong.append(f"commands/{path.name} imports commands.{other}")
    assert not wrong, "\n".join(wrong)


def test_images_of_a_subject_are_made_by_the_renderer_alone():
    """`generate` and `reference_guided` (hifilight.sampling) are called by `sampling.renderer.SubjectRenderer` only:
    predict, the Python API, the service, the evaluation runner, the calibration, DreamBooth's class images and the
    sample grids all render through it (docs/architecture.md)."""
    allowed = {
        PACKAGE / "sampling" / "renderer.py",
        PACKAGE / "sampling" / "generate.py",
        PACKAGE / "sampling" / "reference.py",
    }
    wrong = []
    for path, _ in _modules():
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                direct = isinstance(node.func, ast.Name)  # `generate(...)`, not a model's `self.model.generate(...)`
                owner = getattr(getattr(node.func, "value", None), "id", None)
                if name == "reference_guided" or (name == "generate" and (direct or owner == "generation")):
                    wrong.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} calls {name}")
    assert not wrong, "render through hifilight.sampling.renderer.SubjectRenderer:\n" + "\n".join(wrong)


def _code_lines(node: ast.FunctionDef, lines: list[str]) -> int:
    """Lines of code of a function: its body without the docstring, blank lines and comments."""
    body = node.body
    has_doc = isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant)
    start = (body[1].lineno if len(body) > 1 else node.end_lineno) if has_doc else body[0].lineno
    code = lines[start - 1 : node.end_lineno]
    return sum(1 for line in code if line.strip() and not line.strip().startswith("#"))


def test_modules_and_functions_stay_small():
    """No module over 400 lines, no function over 60 lines of code, the median function at most 10 (the second
    tidy-up's bounds; `serve/` included)."""
    import statistics

    sizes, long_modules, long_functions = [], [], []
    for path in [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "serve").rglob("*.py")]:
        lines = path.read_text().splitlines()
        if len(lines) > 400:
            long_modules.append(f"{path.name}: {len(lines)}")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                sizes.append(_code_lines(node, lines))
                if sizes[-1] > 60:
                    long_functions.append(f"{path.name}:{node.name}: {sizes[-1]}")
    assert not long_modules and not long_functions
    assert statistics.median(sizes) <= 10
