"""The tables stage: run records -> pandas tables (aggregate, paper comparison, claims, fidelity,
summary, the depth challenge), written as CSV, Markdown and LaTeX. Torch-free: pandas, with numpy,
scipy and statsmodels for the claims' statistics; names and columns in resnet_bench.schema."""
