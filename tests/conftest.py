"""How the suite is split over pytest-xdist workers (`bash quickstart.sh test` runs it so).

With `--dist loadfile` each test file is one unit of work, so a module-scoped fixture (the
default pipeline run, a trained model) is built once, on one worker. The Slurm test files form
one unit: they share the one test cluster, and tests on two workers would queue behind each
other's jobs. (xdist's own `loadgroup` would say this with marks, but it does not group under
pytest 9.2: pytest-xdist issue #1386.) Units start longest first, so that the last one to start
is short; that order is a schedule only and changes no test's outcome.
"""
from __future__ import annotations

import json
import os

import pytest

SLURM_UNIT = "slurm"
SLURM_FILES = {"test_slurm.py", "test_pipeline_slurm.py"}
# Units that take minutes on 2 cores, longest first (from CI's --durations); the rest follow.
LONGEST_FIRST = ["test_pipeline.py", SLURM_UNIT, "test_readme.py", "test_distributed.py",
                 "test_pipeline_distributed.py", "test_study_state.py", "test_pipeline_gpus.py"]


def unit_of(path: str) -> str:
    """The unit of work of a test, from its node id or file path."""
    name = path.split("::")[0].rsplit("/", 1)[-1]
    return SLURM_UNIT if name in SLURM_FILES else name


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FilesWithOneSlurmUnit(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return FilesWithOneSlurmUnit(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):  # only the workers' collection orders the units
        return
    for item in items:
        if item.get_closest_marker("slurm") and item.path.name not in SLURM_FILES:
            raise pytest.UsageError(f"{item.nodeid} is marked slurm but its file is not in "
                                    f"tests/conftest.py SLURM_FILES, so it could run beside them")
    rank = {unit: i for i, unit in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(unit_of(item.nodeid), len(rank)))  # stable: files keep their order


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """With RESNET_BENCH_TEST_RESULTS=FILE, one JSON line per test as soon as it is decided, so
    that a run killed part-way (scripts/gpu-check.sh's time limit) keeps what it learnt."""
    path = os.environ.get("RESNET_BENCH_TEST_RESULTS")
    if not path or (report.when != "call" and report.outcome == "passed"):
        return
    message = ""
    if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
        message = str(report.longrepr[2])
    elif report.outcome == "failed":
        message = report.longreprtext[-2000:]
    line = {"test": report.nodeid, "phase": report.when, "outcome": report.outcome,
            "seconds": round(report.duration, 2), "message": message}
    with open(path, "a") as fh:
        fh.write(json.dumps(line) + "\n")
