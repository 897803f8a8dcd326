"""`resnet-bench bench`: time the trainer's hot path against the standard way such code is written.

For each network the same command times two ways of running the paper's training iteration
(forward + backward + SGD step, momentum 0.9, weight decay 1e-4) on the same images and batch size:

* ``project``  - the trainer's path (``train_step`` of resnet_bench/train/step.py, the very
  function `train()` calls): the whole dataset on the device as uint8, batched on-device
  pad/crop/flip + normalisation (``DeviceLoader.batch``), and the options ``--precision bf16``
  (autocast), ``--channels-last`` and ``--compile``;
* ``baseline`` - a torchvision-style ``Dataset`` of PIL images with per-image CPU transforms
  (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize) through a shuffling
  ``DataLoader`` with worker processes, fp32, default memory format, eager, ``loss.item()`` every
  iteration (as a logging loop does).

The headline is the ratio project/baseline of images/s, measured in one process on one machine.
Warm-up iterations are excluded; the first iteration (which pays for compilation, cuDNN
autotuning and lazy initialisation) is timed and reported apart. ``--fidelity`` instead trains a
small net for a short schedule with fp32 eager vs the fast options over several seeds,
to check that the fast path does not change the numbers beyond the seed-to-seed spread.

By job: `cli` (options, checks), `timing` (rounds, pooled results, ratios), `project` and
`baseline` (the two timed paths), `measure` (iteration timer and timed loop they share), `memory`
(peak memory), `report` (a path's result, CSV and printed table), `fidelity` (the fidelity
check), `stream` (`--stream`: the streaming loader against torchvision's), `gpucheck` (the
helpers of scripts/gpu-check.sh: concurrent-training throughput, the paper-schedule run).
"""

from resnet_bench.bench.baseline import BASELINE_WORKERS, baseline_loader, time_baseline
from resnet_bench.bench.cli import DEFAULT_MODEL, FIDELITY_DEFAULT_MODEL, configure, run
from resnet_bench.bench.fidelity import FIDELITY_COLUMNS, fidelity_configs, run_fidelity
from resnet_bench.bench.measure import FLOP_PER_MAC_TRAIN, PAPER_ITERATIONS, IterationTimer
from resnet_bench.bench.memory import PeakMemory
from resnet_bench.bench.project import time_project
from resnet_bench.bench.report import CSV_COLUMNS, PathResult, write_csv
from resnet_bench.bench.timing import PATHS, measure_once, run_timing, summarize

__all__ = ["BASELINE_WORKERS", "CSV_COLUMNS", "DEFAULT_MODEL", "FIDELITY_COLUMNS",
           "FIDELITY_DEFAULT_MODEL", "FLOP_PER_MAC_TRAIN", "IterationTimer", "PAPER_ITERATIONS",
           "PATHS", "PathResult", "PeakMemory", "baseline_loader", "configure", "fidelity_configs",
           "measure_once", "run", "run_fidelity", "run_timing", "summarize", "time_baseline",
           "time_project", "write_csv"]
