# Each dataset is decoded/generated once into a uint8 tensor file that every training job loads.


rule prepare_data:
    output:
        f"{RESULTS}/data/{{dataset}}.pt",
    params:
        args=lambda wc: O.prepare_args(config["datasets"][wc.dataset]),
    log:
        f"{RESULTS}/logs/prepare_data/{{dataset}}.log",
    # A fixed count, not workflow.cores: Snakemake caps it at --cores, and `snakemake --unlock`
    # or `--report` (run without --cores) would otherwise fail asking for a core count.
    threads: 4
    conda:
        "../../environment.yml"
    # params.args is quoted item by item (shlex.quote, resnet_bench.pipeline.outputs)
    shell:
        "resnet-bench data prepare {params.args} --out {output:q} > {log:q} 2>&1"
