# One job per run. Only summary.json is declared: the trainer writes it last, so a killed job
# never looks finished, and its checkpoint (not an output) survives for the retry to resume.


rule train:
    input:
        data=lambda wc: G.prepared_path(RESULTS, wc.dataset),
    output:
        summary=f"{OUT}/runs/{{dataset}}/{{recipe}}/{{model}}/seed{{seed}}/summary.json",
    params:
        recipe=lambda wc: G.recipe_json(config, wc.recipe),
        device=config["device"],
    threads: config["threads_per_run"]
    resources:
        gpu=config["gpus_per_run"],
        mem_mb=lambda wc, attempt: R.mem_mb(wc.model, G.recipe_of(config, wc.recipe), config["resources"], attempt),
        runtime=lambda wc, attempt: R.runtime_min(wc.model, G.recipe_of(config, wc.recipe),
            "gpu" if config["gpus_per_run"] else "cpu", config["resources"], attempt),
    # Retries resume from the run's checkpoint (preemption, node failure, OOM).
    retries: 2
    log:
        f"{OUT}/logs/train/{{dataset}}/{{recipe}}/{{model}}/seed{{seed}}.log",
    benchmark:
        f"{OUT}/benchmarks/train/{{dataset}}/{{recipe}}/{{model}}/seed{{seed}}.tsv"
    conda:
        "../../environment.yml"
    shell:
        # runs_per_gpu: each GPU offers that many slots to the trainers' claims (resnet_bench/gpu.py).
        f"RESNET_BENCH_GPU_SLOTS={config.get('runs_per_gpu', 1)} "
        "resnet-bench train --model {wildcards.model} --dataset {wildcards.dataset} "
        "--prepared {input.data} --seed {wildcards.seed} --device {params.device} "
        "--recipe-json {params.recipe:q} --threads {threads} --no-progress --replace-stale "
        "--out $(dirname {output.summary}) > {log} 2>&1"
