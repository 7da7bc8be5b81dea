"""Nothing that runs on the device names a module the Venus OS image lacks, not even in a function body
(the Venus-like runtime test only sees the paths it runs; this reads every import statement)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from support.venus import MISSING_ON_VENUS

from btbattery.versions import OFF_DEVICE

ROOT = Path(__file__).resolve().parents[2]
OFF_DEVICE_FILES = {ROOT / (name.replace(".", "/") + ".py") for name in OFF_DEVICE}
DEVICE_SCRIPTS = ("installservice.sh", "uninstallservice.sh", "service/run", "service/log/run")


def device_python_files() -> list[Path]:
    files = [ROOT / "dbus-btbattery.py", ROOT / "scan.py", *sorted((ROOT / "btbattery").rglob("*.py"))]
    return [path for path in files if path not in OFF_DEVICE_FILES]


def imported_names(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (  # importlib.import_module("name") with a plain string
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def test_device_code_imports_nothing_venus_lacks() -> None:
    offences = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in device_python_files()
        for line, name in imported_names(ast.parse(path.read_text(), str(path)))
        if name.split(".")[0] in MISSING_ON_VENUS
    ]
    assert offences == []


def test_device_scripts_run_no_missing_module() -> None:
    pattern = re.compile(r"python3?\s+(?:-\w+\s+)*-m\s+([\w.]+)")
    offences = [
        f"{script}: python3 -m {name}"
        for script in DEVICE_SCRIPTS
        for name in pattern.findall((ROOT / script).read_text())
        if name.split(".")[0] in MISSING_ON_VENUS
    ]
    assert offences == []


def test_the_check_sees_an_import_in_a_function_body() -> None:
    tree = ast.parse("def f():\n    import statistics\n    from difflib import get_close_matches\n")
    assert [name for _, name in imported_names(tree)] == ["statistics", "difflib"]
