"""The tables stage: run records -> pandas tables (aggregate, paper comparison, claims, summary,
the depth challenge). pandas only; names and columns in resnet_bench.schema."""
