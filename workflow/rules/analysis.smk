# Looking inside trained networks (V1 Fig. 7, gradient flow, identity path) and the depth
# challenge: one rule per `analysis:` key, each one `resnet-bench analyze` call. Its runs, inputs
# and arguments come from resnet_bench.pipeline.outputs (analysis_inputs, analysis_args); the
# defaults of every option are the CLI's.


for key in O.ANALYSIS_COMMANDS:

    rule:
        name:
            key
        input:
            O.analysis_inputs(config, key),
        output:
            [
                report(f, category="Inside the networks") if f.endswith(".png") else f
                for f in O.analysis_outputs(OUT, key)
            ],
        log:
            f"{OUT}/logs/analysis/{key}.log",
        benchmark:
            f"{OUT}/benchmarks/analysis/{key}.tsv"
        conda:
            "../../environment.yml"
        resources:
            # the depth challenge reads tables only (a local rule, common.smk)
            gpu=0 if O.ANALYSIS_COMMANDS[key] == "depth" else config["gpus_per_run"],
        params:
            args=O.analysis_args(config, key),
        shell:
            "resnet-bench analyze {params.args} > {log:q} 2>&1"
