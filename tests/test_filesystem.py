"""Real filesystem failures, not mocks: a read-only file system, a full disk (a tiny tmpfs) during a
checkpoint and during the final weights, and a directory the user may not write. Each is one line
naming the path and the cause, exit status 2, no file that looks finished, no temp-file litter,
and once the cause is gone the same command finishes the run.

Mounting a tmpfs needs root (CI runs as root); elsewhere these tests skip and say why."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from resnet_bench.cli import main

BASE = ["train", "--model", "v1-basic-8", "--data-option", "train_size=64",
        "--data-option", "test_size=32", "--iterations", "4", "--batch-size", "16", "--no-progress"]


def _mount(where: Path, *options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'not root'}); "
                    "the real-filesystem tests need root")


@pytest.fixture
def tmpfs(tmp_path):
    """A mounter of small tmpfs file systems below tmp_path, all unmounted afterwards."""
    mounted: list[Path] = []

    def mount(name: str, *options: str) -> Path:
        where = tmp_path / name
        _mount(where, *options)
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _one_line(err: str, *needles: str) -> str:
    """The error is one line (progress lines of the training before it aside), with the needles."""
    errors = [line for line in err.strip().splitlines() if "error" in line.lower().split(":")[0]
              or ": error:" in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def _litter(run: Path) -> list[str]:
    return sorted(p.name for p in run.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp"))


def test_read_only_file_system(tmpfs, tmp_path, capsys):
    ro = tmpfs("ro", "ro", "size=1m")
    out = ro / "run"
    assert main([*BASE, "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, str(ro), "Read-only file system")  # names the place
    assert not out.exists()
    finished = tmp_path / "finished"
    assert main([*BASE, "--out", str(finished)]) == 0
    capsys.readouterr()
    for argv in (["aggregate", "--runs", str(finished), "--out", str(ro / "tables")],
                 ["data", "prepare", "--dataset", "synthetic", "--train-size", "64",
                  "--test-size", "32", "--out", str(ro / "synthetic.pt")]):
        assert main(argv) == 2, argv
        _one_line(capsys.readouterr().err, "Read-only file system")
    assert list(ro.iterdir()) == []


@pytest.mark.parametrize("when", ["checkpoint", "final weights"])
def test_full_disk_is_one_line_leaves_no_litter_and_the_rerun_finishes(tmpfs, capsys, when):
    # 64 KiB: the config and provenance fit, a checkpoint or model.pt of v1-basic-8 (~0.3-0.6 MB)
    # does not.
    disk = tmpfs("disk", "size=64k")
    out = disk / "run"
    cadence = '{"checkpoint_every": 2}' if when == "checkpoint" else '{"checkpoint_every": 1000}'
    argv = [*BASE, "--recipe-json", cadence, "--out", str(out)]
    assert main(argv) == 2
    line = _one_line(capsys.readouterr().err, "No space left on device")
    assert str(out) in line
    assert not (out / "summary.json").exists() and not (out / "model.pt").exists()
    assert _litter(out) == []
    # Make room (a tmpfs grows in place) and run the same command again.
    subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
    assert main(argv) == 0
    capsys.readouterr()
    assert (out / "summary.json").exists() and (out / "model.pt").exists()
    assert _litter(out) == []


def test_permission_denied(tmp_path):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the CLI as an unprivileged user")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o755)  # root's; the unprivileged user may only read it
    tmp_path.chmod(0o755)
    out = locked / "run"
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
           sys.executable, "-m", "resnet_bench.cli", *BASE, "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "HOME": str(tmp_path)})
    if "ModuleNotFoundError" in r.stderr or "Permission denied: '/" in r.stderr.split(str(out))[0]:
        pytest.skip(f"the unprivileged user cannot read the installation: {r.stderr.strip()[-200:]}")
    assert r.returncode == 2, r.stderr
    _one_line(r.stderr, str(out), "Permission denied")
    assert not out.exists()


def test_tables_and_figures_on_a_full_disk_are_never_half_written(tmpfs, tmp_path, capsys):
    """Tables and figures are written atomically: on a disk that fills up part-way, every file
    that exists is complete (equal to the same file written with room to spare) and no temp file
    is left; the command fails in one line naming the file."""
    run = tmp_path / "run"
    assert main([*BASE, "--out", str(run)]) == 0
    ref = tmp_path / "ref"
    assert main(["aggregate", "--runs", str(run), "--out", str(ref / "tables")]) == 0
    assert main(["plot", "--tables", str(ref / "tables"), "--out", str(ref / "figures"),
                 "--figure", "v1_fig1", "degradation"]) == 0
    capsys.readouterr()
    # tmpfs stores each file in whole 4 KiB pages: 16 KiB hold the first few tables only.
    disk = tmpfs("full", "size=16k")
    for argv, sub in ((["aggregate", "--runs", str(run), "--out", str(disk / "tables")], "tables"),
                      (["plot", "--tables", str(ref / "tables"), "--out", str(disk / "figures"),
                        "--figure", "v1_fig1", "degradation"], "figures")):
        assert main(argv) == 2, argv
        _one_line(capsys.readouterr().err, "No space left on device", str(disk))
        written = sorted(p.name for p in (disk / sub).iterdir()) if (disk / sub).exists() else []
        assert not [n for n in written if n.startswith(".")], written
        for name in written:
            assert (disk / sub / name).read_bytes() == (ref / sub / name).read_bytes(), name
        assert len(written) < len(list((ref / sub).iterdir()))  # the disk did fill up
        for p in (disk / sub).iterdir() if (disk / sub).exists() else []:
            p.unlink()
