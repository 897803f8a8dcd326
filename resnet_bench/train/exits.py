"""Exit statuses of a training process: what a scheduler, a launcher or a script reads of a run.

A leaf: it imports nothing, so the trainer, its torchrun launcher and bench.gpucheck (the
helper of scripts/gpu-check.sh) share it.
"""

EXIT_COMPLETED = 0  # finished or diverged: the run's summary.json is written
EXIT_FAILED = 1
# Stopped by SIGTERM (or SIGINT) after writing its checkpoint (EX_TEMPFAIL): run the same command
# again, and it resumes.
EXIT_PREEMPTED = 75
