"""Nothing in the repository may depend on the development machines' file system: a fresh clone
elsewhere must be able to rerun every study. Run records under results/ keep the paths they
were made with (their provenance), and only there are such paths allowed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Split so that this file does not match itself: the folder beside the checkout where the
# development machines keep the data, and the root of their checkouts.
PATTERNS = (".." + "/shared", "/wo" + "rk/")


def repository_files() -> list[Path]:
    """Tracked and new (not ignored) files outside results/."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                             cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the files of the repository are not known")
    names = [n for n in out.decode().split("\0") if n]
    return [REPO / n for n in names if not n.startswith("results/") and (REPO / n).is_file()]


def test_no_development_machine_paths_outside_results():
    found = []
    for path in repository_files():
        try:
            text = path.read_text(errors="strict")
        except (UnicodeDecodeError, OSError):
            continue  # binary files (images, archives)
        for lineno, line in enumerate(text.splitlines(), 1):
            for pattern in PATTERNS:
                if pattern in line:
                    found.append(f"{path.relative_to(REPO)}:{lineno}: {line.strip()[:100]}")
    assert not found, "paths of the development machines:\n" + "\n".join(found)


def test_the_check_sees_the_configs_and_would_catch_a_path(tmp_path):
    files = {p.relative_to(REPO).as_posix() for p in repository_files()}
    assert {"config/v1_cpu.yaml", "README.md", "docs/datasets.md", "tests/test_data.py"} <= files
    assert not any(f.startswith("results/") for f in files)
    line = "    root: " + PATTERNS[0] + "/data/cifar10-jpeg.tar.gz"
    assert any(p in line for p in PATTERNS)
