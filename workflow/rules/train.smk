# runs_per_gpu: K > 1 packs K trainings into one cluster job: they form the group `gpupack` with
# K components (locally groups are inactive, and the GPU slot pool shares the GPUs instead).
RUNS_PER_GPU = config.get("runs_per_gpu", 1)
# gpus_per_run / ranks_per_run > 1: each run is one torchrun of several ranks (DDP), started by
# `resnet-bench launch` (resnet_bench/pipeline/launch.py); its job asks for every rank's threads.
LAYOUT = L.layout(config)
if workflow.is_main_process and not workflow.local_exec:
    _problem = R.cluster_cores_problem(LAYOUT, RUNS_PER_GPU, config["threads_per_run"], workflow.cores)
    if _problem:
        raise WorkflowError(_problem)


def train_input_data(wc):
    """The run's prepared data set; first, for runs_per_gpu > 1, the pack size as the group
    components (here: Snakemake installs the command line's group settings only after the
    Snakefile has been parsed)."""
    if RUNS_PER_GPU > 1:
        import immutables

        settings = workflow.group_settings
        try:
            components = R.pack_components(settings.group_components, RUNS_PER_GPU)
        except ValueError as exc:
            raise WorkflowError(str(exc)) from None
        settings.group_components = immutables.Map(components)
    return G.prepared_path(RESULTS, wc.dataset)


# One job per run. Only summary.json is declared: the trainer writes it last, so a killed job
# never looks finished, and its checkpoint (not an output) survives for the retry to resume.


rule train:
    input:
        data=train_input_data,
    output:
        summary=f"{OUT}/runs/{{dataset}}/{{recipe}}/{{model}}/seed{{seed}}/summary.json",
    params:
        recipe=lambda wc: G.recipe_json(config, wc.recipe),
        device=config["device"],
        out=lambda wc, output: os.path.dirname(output.summary),
    threads: LAYOUT.threads_per_node
    resources:
        gpu=R.local_gpus(LAYOUT),
        gres=R.gres(LAYOUT),
        nodes=R.nodes(LAYOUT),
        # from the network's cost at the dataset's image size (resnet_bench/pipeline/resources.py)
        mem_mb=lambda wc, attempt: R.mem_mb(wc.model, G.recipe_of(config, wc.recipe), config["resources"],
            attempt, G.image_size_of(config, wc.dataset), ranks=LAYOUT.ranks_per_node),
        runtime=lambda wc, attempt: R.runtime_min(wc.model, G.recipe_of(config, wc.recipe),
            "gpu" if config["gpus_per_run"] else "cpu", config["resources"], attempt,
            G.image_size_of(config, wc.dataset), devices=LAYOUT.world_size),
    # Retries resume from the run's checkpoint (preemption, node failure, OOM).
    retries: 2
    group: "gpupack" if RUNS_PER_GPU > 1 else None
    log:
        f"{OUT}/logs/train/{{dataset}}/{{recipe}}/{{model}}/seed{{seed}}.log",
    benchmark:
        f"{OUT}/benchmarks/train/{{dataset}}/{{recipe}}/{{model}}/seed{{seed}}.tsv"
    conda:
        "../../environment.yml"
    shell:
        # runs_per_gpu: each GPU offers that many slots to the trainers' claims (resnet_bench/gpu.py).
        # The command's head is `resnet-bench train` or, for a distributed run, its launcher.
        # Every path and value is quoted (:q): `results` may hold spaces, quotes, `;` or `$(...)`.
        # --wait-for-lock: a trainer orphaned by a killed Snakemake still holds the run; the rerun's
        # trainer waits for it to finish (or die) instead of failing the job.
        f"RESNET_BENCH_GPU_SLOTS={config.get('runs_per_gpu', 1)} "
        f"{L.train_command(config)} --model {{wildcards.model:q}} --dataset {{wildcards.dataset:q}} "
        "--prepared {input.data:q} --seed {wildcards.seed:q} --device {params.device:q} "
        f"--recipe-json {{params.recipe:q}} --threads {L.threads_arg(config)} --no-progress "
        "--replace-stale --wait-for-lock --out {params.out:q} > {log:q} 2>&1"
