"""The project path: the trainer's own iteration (resnet_bench.train.step) on the DeviceLoader."""

from __future__ import annotations

import math

from resnet_bench.bench.measure import backend_flags, build_model_on, timed


def time_project(name: str, dataset, args, device, note) -> tuple[float, list[float], int]:
    """The trainer's iteration: DeviceLoader.batch + `train_step` of resnet_bench/train/step.py.

    The same calls as `train()`: lr from the recipe's schedule, `train_step` (autocast forward,
    fp32 cross-entropy, zero_grad, backward, SGD step), per-step loss/error kept on the device
    (`StepValues`) and copied to the host every `sync_interval(device)` iterations.
    """
    from resnet_bench.data import DeviceLoader
    from resnet_bench.train.recipe import Recipe
    from resnet_bench.train.step import (StepValues, compiled, make_optimizer, prepare_model,
                                         sync_interval, train_step)

    recipe = Recipe(batch_size=args.batch_size, precision=args.precision, compile=args.compile,
                    channels_last=args.channels_last,
                    activation_checkpointing=args.activation_checkpointing)
    loader = DeviceLoader(dataset.train_x, dataset.train_y, batch_size=recipe.batch_size,
                          device=device, seed=args.seed, augment=recipe.augment,
                          normalize=recipe.normalize, channels_last=recipe.channels_last)
    model = prepare_model(build_model_on(name, dataset.num_classes, dataset.in_channels, args.seed, device),
                          device, recipe)
    model.set_activation_checkpointing(recipe.activation_checkpointing)  # as train() does
    optimizer = make_optimizer(model, recipe, fused=args.fused_sgd)
    step_model = compiled(model, recipe, args.compile_mode, args.compile_backend)
    model.train()
    sync_every = sync_interval(device)
    values = StepValues()

    def step(it: int) -> int:
        lr = recipe.lr_at(it)
        xb, yb = loader.batch(it)
        loss, wrong = train_step(step_model, optimizer, xb, yb, lr, device, recipe.precision)
        values.add(it, lr, loss, wrong)
        if (it + 1) % sync_every == 0:
            for _, _, loss_v, _ in values.drain():  # the trainer's drain(): host copies
                if not math.isfinite(loss_v):
                    raise FloatingPointError(f"{name}: loss is not finite at iteration {it}")
        return len(yb)

    with backend_flags(device, recipe.precision):
        return timed(step, warmup=args.warmup_iters, iters=args.iters, device=device, note=note)
