"""A runs table with one run of every registered CIFAR network (plus the V2 Table 1 spellings the
paper rows name) on each dataset kind, for checking which paper rows each network meets."""

import pandas as pd

EXTRA = ["v1-basic-110-scale-s0", "v1-basic-110-exgate-b-1", "v1-basic-110-exgate-b-2",
         "v1-basic-110-exgate-b-3", "v1-basic-110-exgate-b-4", "v1-basic-110-scgate-b-5",
         "v1-basic-110-exgate-b6", "v2-basic-110-optB", "v1-bottleneck-164-optA"]
DATASETS = [("cifar10", "CIFAR-10"), ("cifar100", "CIFAR-100"), ("synthetic", "synthetic"),
            ("cifar10_jpeg", "CIFAR-10 (JPEG q75 mirror)")]


def every_model_runs() -> pd.DataFrame:
    from resnet_bench.models import list_models, parse_model_name
    # the CIFAR nets: the dataset kinds below are CIFAR's, and no paper row names an ImageNet net
    specs = [s for s in list_models() if s.stem == "cifar"] + [parse_model_name(n) for n in EXTRA]
    rows = []
    for i, spec in enumerate(specs):
        for j, (dataset, label) in enumerate(DATASETS):
            for seed in (0, 1):
                rows.append(dict(model=spec.name, family=spec.family, block=spec.block,
                                 depth=spec.depth, variant=spec.variant, dataset=dataset,
                                 dataset_label=label, recipe="paper", seed=seed,
                                 planned_iterations=64000, batch_size=128 if j != 1 else 64,
                                 final_test_error_pct=5.0 + i * 0.1 + seed,
                                 final_train_error_pct=0.5 + i * 0.01 + seed))
    return pd.DataFrame(rows)
