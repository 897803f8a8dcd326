"""The baseline path: a torchvision-style PIL Dataset with per-image CPU transforms through a
shuffling DataLoader, fp32, eager, as typical CIFAR training scripts are written."""

from __future__ import annotations

from typing import Iterator

from resnet_bench.bench.measure import backend_flags, build_model_on, timed

# akamaster/pytorch_resnet_cifar10 (the most cited V1 reproduction) uses 4 workers; so do most
# CIFAR training scripts.
BASELINE_WORKERS = 4


class _PilImages:
    """A torchvision-CIFAR-style Dataset: HWC uint8 arrays, a PIL image per item, then transforms."""

    def __init__(self, x, y, transform) -> None:
        self.data = x.permute(0, 2, 3, 1).contiguous().numpy()  # as torchvision's CIFAR10.data
        if self.data.shape[-1] == 1:
            self.data = self.data[..., 0]
        self.targets = y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        from PIL import Image
        img = Image.fromarray(self.data[index])
        return self.transform(img), self.targets[index]


def baseline_loader(dataset, batch_size: int, workers: int, pin_memory: bool, seed: int):
    """The standard CIFAR input pipeline on the same uint8 images."""
    import torch
    from torchvision import transforms
    x = dataset.train_x
    mean = (x.float().mean(dim=(0, 2, 3)) / 255).tolist()
    std = (x.float().std(dim=(0, 2, 3)) / 255).tolist()
    h, w = dataset.image_size
    transform = transforms.Compose([
        transforms.RandomCrop((h, w), padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])
    ds = _PilImages(x, dataset.train_y, transform)
    # drop_last so that every timed iteration is a full batch, like the paper's iterations.
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                       pin_memory=pin_memory, drop_last=True,
                                       generator=torch.Generator().manual_seed(seed))


def time_baseline(name: str, dataset, args, device, note) -> tuple[float, list[float], int]:
    """fp32, eager, default memory format, DataLoader with per-image CPU transforms."""
    import torch.nn as nn
    from resnet_bench.train.recipe import Recipe
    from resnet_bench.train.step import make_optimizer

    recipe = Recipe(batch_size=args.batch_size)
    loader = baseline_loader(dataset, args.batch_size, args.baseline_workers,
                             pin_memory=device.type == "cuda", seed=args.seed)
    model = build_model_on(name, dataset.num_classes, dataset.in_channels, args.seed, device)
    optimizer = make_optimizer(model, recipe)
    criterion = nn.CrossEntropyLoss()
    model.train()
    state: dict[str, Iterator] = {}

    def next_batch():
        # A new epoch restarts the iterator (and, as in most scripts, the worker processes).
        try:
            return next(state["it"])
        except (KeyError, StopIteration):
            state["it"] = iter(loader)
            return next(state["it"])

    def step(it: int) -> int:
        xb, yb = next_batch()
        xb = xb.to(device, non_blocking=True)
        yb = yb.to(device, non_blocking=True)
        out = model(xb)
        loss = criterion(out, yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()  # the running-average logging every such loop does (a host sync)
        return len(yb)

    try:
        with backend_flags(device, None):
            return timed(step, warmup=args.warmup_iters, iters=args.iters, device=device, note=note)
    finally:
        state.clear()  # shuts the workers down before the next measurement
