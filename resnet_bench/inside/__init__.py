"""The inside-the-network stage: torch probes of trained (or freshly initialised) networks
(layer responses, gradient flow, identity path), written as CSVs that resnet_bench.plots.inside
draws."""
