"""The README's Layout table cannot go stale: it names every code folder, and everything it names exists.

A code folder is a top-level folder holding Python code (at any depth) or a sub-package (a folder
with an ``__init__.py``) below one. Hidden folders, caches and what git ignores do not count.
"""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIPPED_PARTS = {"__pycache__", "node_modules"}


def layout_rows(readme_text: str) -> list[str]:
    """First cells of the table under the README's ``## Layout`` heading."""
    section = re.split(r"^## Layout[^\n]*\n", readme_text, maxsplit=1, flags=re.MULTILINE)
    if len(section) < 2:
        return []
    body = re.split(r"^## ", section[1], maxsplit=1, flags=re.MULTILINE)[0]
    table = [line for line in body.splitlines() if line.startswith("|")]
    rows = [line for line in table[2:] if not re.fullmatch(r"\|[\s:|-]*", line)]
    return [row.split("|")[1] for row in rows]


def layout_paths(readme_text: str) -> set[str]:
    """Every path written in backquotes in the Layout table's first column, without a trailing slash."""
    return {name.rstrip("/") for cell in layout_rows(readme_text) for name in re.findall(r"`([^`]+)`", cell)}


def repository_files(root: Path) -> list[Path]:
    """Files git tracks or would track (ignored ones left out); every file where git is not available."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return [p.relative_to(root) for p in root.rglob("*") if p.is_file()]
    return [Path(name) for name in listed if (root / name).is_file()]


def code_folders(root: Path) -> set[str]:
    """Top-level folders with Python code, and every sub-package below them."""
    folders = set()
    for path in repository_files(root):
        parts = path.parts
        if len(parts) < 2 or any(p.startswith(".") or p in SKIPPED_PARTS or p.endswith(".egg-info") for p in parts):
            continue
        if path.suffix == ".py":
            folders.add(parts[0])
        if path.name == "__init__.py" and len(parts) > 2:
            folders.add("/".join(parts[:-1]))
    return folders


def layout_problems(root: Path) -> tuple[list[str], list[str]]:
    """(code folders the table leaves out, paths the table names that do not exist)."""
    names = layout_paths((root / "README.md").read_text(encoding="utf-8"))
    assert names, f"{root / 'README.md'} has no '## Layout' table"
    missing = sorted(code_folders(root) - names)
    stale = sorted(name for name in names if not (root / name).exists())
    return missing, stale


def test_readme_layout_names_every_code_folder():
    missing, _ = layout_problems(ROOT)
    assert not missing, f"add a row to the README's Layout table for: {', '.join(m + '/' for m in missing)}"


def test_readme_layout_paths_exist():
    _, stale = layout_problems(ROOT)
    assert not stale, f"the README's Layout table names paths that do not exist: {', '.join(stale)}"


def write(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_checker_finds_a_missing_row_and_a_stale_one(tmp_path):
    """A hand-made repository: one sub-package left out of the table, one row naming a gone folder."""
    write(
        tmp_path / "README.md",
        (
            "# x\n\n## Layout\n\n| path | what |\n|---|---|\n"
            "| `pkg/` | the package |\n| `old/` | moved away |\n| `tools/` | scripts |\n\n## Next\n\n| `ignored/` | x |\n"
        ),
    )
    write(tmp_path / "pkg/__init__.py")
    write(tmp_path / "pkg/sub/__init__.py")  # a sub-package the table forgets
    write(tmp_path / "pkg/page/app.js")  # not code: needs no row
    write(tmp_path / "tools/run.py")  # a top-level folder of scripts, named
    write(tmp_path / ".ci/helper.py")  # hidden: needs no row
    write(tmp_path / "notes/readme.md")  # no Python: needs no row
    assert layout_paths((tmp_path / "README.md").read_text()) == {"pkg", "old", "tools"}
    assert layout_problems(tmp_path) == (["pkg/sub"], ["old"])


def test_checker_is_satisfied_by_a_complete_table(tmp_path):
    write(
        tmp_path / "README.md",
        "## Layout\n\n| path | what |\n|---|---|\n| `pkg/` · `pkg/sub/` | x |\n| `cli.py` | y |\n",
    )
    write(tmp_path / "pkg/__init__.py")
    write(tmp_path / "pkg/sub/__init__.py")
    write(tmp_path / "cli.py")
    assert layout_problems(tmp_path) == ([], [])
