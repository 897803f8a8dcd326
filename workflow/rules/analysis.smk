# Looking inside trained networks (V1 Fig. 7, gradient flow, identity path, depth challenge).
# Each analysis named under `analysis:` in the config reads the runs it names from the grid.


rule layer_responses:
    input:
        lambda wc: analysis_inputs("layer_responses"),
    output:
        [report(f, category="Inside the networks") if f.endswith(".png") else f
         for f in O.analysis_outputs(OUT, "layer_responses")],
    params:
        runs=lambda wc: analysis_dirs("layer_responses"),
        out=lambda wc, output: os.path.dirname(output[0]),
        device=config["device"],
        max_images=lambda wc: config["analysis"]["layer_responses"].get("max_images", 0) or "",
    resources:
        gpu=config["gpus_per_run"],
    log:
        f"{OUT}/logs/analysis/layer_responses.log",
    conda:
        "../../environment.yml"
    shell:
        "resnet-bench analyze responses --device {params.device} --runs {params.runs} --out {params.out} "
        "$([ -n '{params.max_images}' ] && echo --max-images {params.max_images}) > {log} 2>&1"


rule gradient_flow:
    input:
        lambda wc: analysis_inputs("gradient_flow"),
    output:
        [report(f, category="Inside the networks") if f.endswith(".png") else f
         for f in O.analysis_outputs(OUT, "gradient_flow")],
    params:
        runs=lambda wc: analysis_dirs("gradient_flow"),
        out=lambda wc, output: os.path.dirname(output[0]),
        device=config["device"],
        models=lambda wc: sorted({r.model for r in G.analysis_runs(config, "gradient_flow")}),
        batch=lambda wc: config["analysis"]["gradient_flow"].get("batch_size", 128),
        data=lambda wc: G.prepared_path(RESULTS, G.analysis_runs(config, "gradient_flow")[0].dataset),
    resources:
        gpu=config["gpus_per_run"],
    log:
        f"{OUT}/logs/analysis/gradient_flow.log",
    conda:
        "../../environment.yml"
    shell:
        "resnet-bench analyze gradients --device {params.device} --runs {params.runs} --models {params.models} "
        "--batch-size {params.batch} --prepared {params.data} --out {params.out} > {log} 2>&1"


rule identity_path:
    input:
        lambda wc: analysis_inputs("identity_path"),
    output:
        [report(f, category="Inside the networks") if f.endswith(".png") else f
         for f in O.analysis_outputs(OUT, "identity_path")],
    params:
        runs=lambda wc: analysis_dirs("identity_path"),
        out=lambda wc, output: os.path.dirname(output[0]),
        device=config["device"],
        max_images=lambda wc: config["analysis"]["identity_path"].get("max_images", 0) or "",
    resources:
        gpu=config["gpus_per_run"],
    log:
        f"{OUT}/logs/analysis/identity_path.log",
    conda:
        "../../environment.yml"
    shell:
        "resnet-bench analyze identity --device {params.device} --runs {params.runs} --out {params.out} "
        "$([ -n '{params.max_images}' ] && echo --max-images {params.max_images}) > {log} 2>&1"


rule depth_challenge:
    input:
        lambda wc: analysis_inputs("depth_challenge"),
    output:
        [report(f, category="Inside the networks") if f.endswith(".png") else f
         for f in O.analysis_outputs(OUT, "depth_challenge")],
    params:
        runs=lambda wc: analysis_dirs("depth_challenge"),
        out=lambda wc, output: os.path.dirname(output[0]),
    log:
        f"{OUT}/logs/analysis/depth_challenge.log",
    conda:
        "../../environment.yml"
    shell:
        "resnet-bench analyze depth --runs {params.runs} --out {params.out} > {log} 2>&1"
