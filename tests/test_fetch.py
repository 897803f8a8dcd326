"""Public datasets: `resnet-bench data fetch` and the pipeline's fetch rule, against archives served
over HTTP from a temporary directory (no network here; the real GitHub download is not tested),
and the content fingerprint that decides what is kept (resnet_bench/public_data.py)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import subprocess
import sys
import tarfile
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from resnet_bench import public_data
from resnet_bench.cli import main as cli_main
from resnet_bench.data import DatasetError, load_dataset
from resnet_bench.data.fetch import fetch
from resnet_bench.data.folder import content_fingerprint

sys.path.insert(0, str(Path(__file__).parent))
from mirror import require_mirror  # noqa: E402
from pipeline_helpers import workflow_copy  # noqa: E402

COMMIT = public_data.CIFAR10_JPEG_COMMIT


def _jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(buf, "JPEG", quality=75)
    return buf.getvalue()


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _images() -> dict[str, bytes]:
    return {f"{split}/{c}/{k:04d}.jpg": _jpeg(40 * i + k + (split == "test"))
            for split in ("train", "test") for i, c in enumerate(("cat", "dog")) for k in range(2)}


def _by_hand(images: dict[str, bytes]) -> str:
    """The fingerprint as public_data.py defines it, computed here independently."""
    h = hashlib.sha256()
    for rel in sorted(images):
        h.update(f"{rel}\n{len(images[rel])}\n".encode() + images[rel])
    return h.hexdigest()


@pytest.fixture()
def served(tmp_path):
    """(directory served over HTTP, its base URL)."""
    root = tmp_path / "served"
    root.mkdir()
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture()
def tiny_source(monkeypatch):
    """A registered public dataset whose content is `_images()` (the layout of GitHub's archive:
    one top folder named after the commit, a README beside train/ and test/)."""
    images = _images()
    source = replace(public_data.PUBLIC["cifar10-jpeg"], key="tiny",
                     content_sha256=_by_hand(images), archive_sha256=())
    monkeypatch.setitem(public_data.PUBLIC, "tiny", source)
    return images


def _github_like(path: Path, images: dict[str, bytes], top: str = f"CIFAR-10-images-{COMMIT}"):
    return _tar(path, {f"{top}/README.md": b"# CIFAR-10 images\n", f"{top}/get_pic.sh": b"#!/bin/sh\n",
                       **{f"{top}/{k}": v for k, v in images.items()}})


def test_fingerprint_is_the_image_files_only_and_survives_repacking(tmp_path, tiny_source):
    github = _github_like(tmp_path / "github.tar.gz", tiny_source)
    repacked = _tar(tmp_path / "repacked.tar.gz",
                    {f"cifar10-jpeg/{k}": v for k, v in reversed(tiny_source.items())})
    folder = tmp_path / "extracted"
    for rel, data in tiny_source.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    assert {content_fingerprint(p) for p in (github, repacked, folder)} == {_by_hand(tiny_source)}
    one_byte = dict(tiny_source, **{"train/cat/0000.jpg": tiny_source["train/cat/0000.jpg"] + b"\0"})
    assert content_fingerprint(_tar(tmp_path / "x.tar.gz", one_byte)) != _by_hand(tiny_source)
    renamed = {k.replace("0001", "0009"): v for k, v in tiny_source.items()}
    assert content_fingerprint(_tar(tmp_path / "y.tar.gz", renamed)) != _by_hand(tiny_source)


def test_fetch_downloads_verifies_and_keeps_only_the_recorded_content(tmp_path, served, tiny_source):
    root, url = served
    _github_like(root / "good.tar.gz", tiny_source)
    bad = dict(tiny_source)
    bad["test/dog/0001.jpg"] = _jpeg(255)
    _github_like(root / "bad.tar.gz", bad)
    out = tmp_path / "data" / "tiny.tar.gz"

    with pytest.raises(DatasetError) as err:
        fetch("tiny", out, url=f"{url}/bad.tar.gz", log=lambda _: None)
    msg = str(err.value)
    assert "\n" not in msg and "bad.tar.gz" in msg and "refused" in msg
    assert _by_hand(tiny_source)[:16] in msg
    assert not out.exists() and list(out.parent.iterdir()) == []   # nothing half-written left

    with pytest.raises(DatasetError, match=r"download failed .*not found"):
        fetch("tiny", out, url=f"{url}/missing.tar.gz", log=lambda _: None)
    assert list(out.parent.iterdir()) == []

    assert fetch("tiny", out, url=f"{url}/good.tar.gz", log=lambda _: None) == out
    assert out.read_bytes() == (root / "good.tar.gz").read_bytes()
    assert [p.name for p in out.parent.iterdir()] == ["tiny.tar.gz"]
    ds = load_dataset("folder", out)   # the folder kind reads GitHub's layout as it is
    assert ds.classes == ["cat", "dog"] and ds.train_x.shape == (4, 3, 8, 8)

    # a copy already there is verified, not downloaded (the URL is dead) ...
    assert fetch("tiny", out, url=f"{url}/missing.tar.gz", log=lambda _: None) == out
    # ... and one with other content is refused and left as it is
    other = tmp_path / "other.tar.gz"
    (root / "bad.tar.gz").rename(other)
    with pytest.raises(DatasetError, match="is not tiny"):
        fetch("tiny", other, log=lambda _: None)
    assert other.exists()


def test_cli_fetch_refuses_in_one_line(tmp_path, served, capsys):
    root, url = served
    (root / "junk.tar.gz").write_bytes(b"not an archive")
    out = tmp_path / "c.tar.gz"
    assert cli_main(["data", "fetch", "cifar10-jpeg", "--out", str(out),
                     "--url", f"{url}/junk.tar.gz"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("resnet-bench data: error:") and \
        "junk.tar.gz" in err
    assert not out.exists() and list(tmp_path.iterdir()) == [root]
    with pytest.raises(SystemExit):
        cli_main(["data", "fetch", "imagenet", "--out", str(out)])


def test_the_real_mirror_in_githubs_layout_is_accepted(tmp_path, served):
    """The development copy re-packed as GitHub packs the pinned commit (top folder named after it,
    the repository's own files beside train/ and test/) is accepted under the recorded
    fingerprint. That GitHub's archive holds these very bytes is not checked here (no network)."""
    mirror = require_mirror()
    if not mirror.is_file():
        pytest.skip(f"{mirror} is a folder; this test re-packs the archive")
    root, url = served
    top = f"CIFAR-10-images-{COMMIT}"
    with tarfile.open(mirror) as src, tarfile.open(root / f"{COMMIT}.tar.gz", "w:gz",
                                                   compresslevel=1) as dst:
        for m in src:
            rel = m.name.split("/", 1)[-1]   # below the development copy's top folder
            if m.isfile() and rel.startswith(("train/", "test/")):
                data = src.extractfile(m).read()
                info = tarfile.TarInfo(f"{top}/{rel}")
                info.size = len(data)
                dst.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo(f"{top}/README.md")
        info.size = 4
        dst.addfile(info, io.BytesIO(b"# x\n"))
    out = fetch("cifar10-jpeg", tmp_path / "cifar10-jpeg.tar.gz", url=f"{url}/{COMMIT}.tar.gz",
                log=lambda _: None)
    assert content_fingerprint(out) == public_data.PUBLIC["cifar10-jpeg"].content_sha256


def _snakemake(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_pipeline_plans_and_runs_the_fetch_from_a_fresh_checkout(tmp_path, served):
    """config/v1_cpu.yaml in a checkout without data/ or results/: the dry run plans the fetch
    before data preparation; the fetch rule then downloads from a local server, and keeps the
    file only if it is the mirror (the real one where it is available, else a look-alike that
    must be refused)."""
    root, url = served
    wf = workflow_copy(tmp_path / "wf")
    dry = _snakemake(wf, "--cores", "2", "--configfile", "config/v1_cpu.yaml", "-n")
    assert dry.returncode == 0, dry.stderr[-2000:]
    plan = dry.stdout + dry.stderr
    assert "fetch_data" in plan and "prepare_data" in plan
    assert "Missing output files: data/cifar10-jpeg.tar.gz" in plan
    assert plan.index("rule fetch_data:") < plan.index("rule prepare_data:")

    from mirror import mirror_path
    real = mirror_path()
    if real is not None and real.is_file():
        (root / "mirror.tar.gz").symlink_to(real)
        expect_ok = True
    else:
        _tar(root / "mirror.tar.gz", {f"cifar10-jpeg/{k}": v for k, v in _images().items()})
        expect_ok = False
    override = yaml.safe_dump({"cifar10-jpeg": {"url": f"{url}/mirror.tar.gz"}},
                              default_flow_style=True).strip()
    run = _snakemake(wf, "data/cifar10-jpeg.tar.gz", "--cores", "1", "--configfile",
                     "config/v1_cpu.yaml", "--config", f"datasets={override}")
    log = (wf / "results/logs/fetch_data.log").read_text()
    assert (wf / "results/benchmarks/fetch_data.tsv").exists() == expect_ok
    if expect_ok:
        assert run.returncode == 0, run.stderr[-2000:]
        assert (wf / "data/cifar10-jpeg.tar.gz").read_bytes() == real.read_bytes()
        assert "content verified (cifar10-jpeg)" in log
    else:
        assert run.returncode != 0
        assert not (wf / "data/cifar10-jpeg.tar.gz").exists()
        assert len([line for line in log.splitlines() if "error" in line]) == 1
        assert "is not cifar10-jpeg" in log and "refused" in log


def test_a_dataset_without_source_plans_no_fetch_and_no_new_input():
    """An entry that only names a root (config/v2_1001_cpu.yaml's form, a study registered before
    `source` existed) keeps its prepare_data job exactly as it was: no input, no fetch rule;
    `resnet-bench data fetch cifar10-jpeg` writes the very file it reads."""
    from resnet_bench.pipeline import grid as G
    from resnet_bench.pipeline import outputs as O
    entry = {"kind": "folder", "root": "data/cifar10-jpeg.tar.gz",
             "options": {"name": "cifar10-jpeg", "label": "CIFAR-10 (JPEG q75 mirror)"}}
    assert O.prepare_inputs(entry) == [] and G.fetch_targets({"datasets": {"c": entry}}) == {}
    assert public_data.PUBLIC["cifar10-jpeg"].default_root == entry["root"]
    fetched = dict(entry, source="cifar10-jpeg")
    assert O.prepare_inputs(fetched) == ["data/cifar10-jpeg.tar.gz"]
    assert G.fetch_targets({"datasets": {"c": fetched}}) == {"data/cifar10-jpeg.tar.gz":
                                                             ["cifar10-jpeg"]}


@pytest.mark.parametrize("change, needle", [
    ({"source": "cifar11"}, "source: unknown public dataset 'cifar11'; known: cifar10-jpeg"),
    ({"source": "cifar10-jpeg", "kind": "cifar10", "options": {}},
     "kind: 'cifar10', but source cifar10-jpeg"),
    ({"source": None, "url": "file:///x.tar.gz"}, "url: needs `source`"),
    ({"source": "cifar10-jpeg", "root": ""}, "root: missing"),
])
def test_bad_source_entries_are_refused_in_one_line(change, needle):
    from resnet_bench.pipeline.grid import GridError, validate
    cfg = yaml.safe_load((Path(__file__).parents[1] / "config/v1_cpu.yaml").read_text())
    entry = {**cfg["datasets"]["cifar10-jpeg"], **change}
    cfg["datasets"]["cifar10-jpeg"] = {k: v for k, v in entry.items() if v is not None}
    with pytest.raises(GridError) as err:
        validate(cfg)
    assert needle in str(err.value) and "\n" not in str(err.value)
