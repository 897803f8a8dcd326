"""What every stage leans on and no stage owns: atomic file writes, strict JSON, argparse
helpers, the one-line config checks (checks.py), and the GPU slot pool behind `gpu-run`.
Nothing here imports from the rest of the package."""
