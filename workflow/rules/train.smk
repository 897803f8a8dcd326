# One job per run. Only summary.json is declared: the trainer writes it last, so a killed job
# never looks finished, and its checkpoint (not an output) survives for the retry to resume.


rule train:
    input:
        data=train_input_data,
    output:
        summary=f"{G.run_dir_pattern(RESULTS, EXP)}/summary.json",
    log:
        f"{OUT}/logs/train/{G.RUN_ID}.log",
    benchmark:
        f"{OUT}/benchmarks/train/{G.RUN_ID}.tsv"
    # Retries resume from the run's checkpoint (preemption, node failure, OOM).
    retries: 2
    group:
        "gpupack" if RUNS_PER_GPU > 1 else None
    conda:
        "../../environment.yml"
    threads: LAYOUT.threads_per_node
    resources:
        gpu=R.local_gpus(LAYOUT),
        gres=R.gres(LAYOUT),
        nodes=R.nodes(LAYOUT),
        # from the network's cost at the dataset's image size (resnet_bench/pipeline/resources.py)
        mem_mb=lambda wc, attempt: R.mem_mb(
            wc.model,
            G.recipe_of(config, wc.recipe),
            config["resources"],
            attempt,
            G.image_size_of(config, wc.dataset),
            ranks=LAYOUT.ranks_per_node,
        ),
        runtime=lambda wc, attempt: R.runtime_min(
            wc.model,
            G.recipe_of(config, wc.recipe),
            "gpu" if config["gpus_per_run"] else "cpu",
            config["resources"],
            attempt,
            G.image_size_of(config, wc.dataset),
            devices=LAYOUT.world_size,
        ),
    params:
        recipe=lambda wc: G.recipe_json(config, wc.recipe),
        device=config["device"],
        out=lambda wc, output: os.path.dirname(output.summary),
    shell:
        # runs_per_gpu: each GPU offers that many slots to the trainers' claims (resnet_bench/infra/gpu.py).
        # The command's head is `resnet-bench train` or, for a distributed run, its launcher.
        # Every path and value is quoted (:q): `results` may hold spaces, quotes, `;` or `$(...)`.
        # --wait-for-lock: a trainer orphaned by a killed Snakemake still holds the run; the rerun's
        # trainer waits for it to finish (or die) instead of failing the job.
        f"RESNET_BENCH_GPU_SLOTS={RUNS_PER_GPU} "
        f"{L.train_command(config)} --model {{wildcards.model:q}} --dataset {{wildcards.dataset:q}} "
        "--prepared {input.data:q} --seed {wildcards.seed:q} --device {params.device:q} "
        f"--recipe-json {{params.recipe:q}} --threads {L.threads_arg(config)} --no-progress "
        "--replace-stale --wait-for-lock --out {params.out:q} > {log:q} 2>&1"
