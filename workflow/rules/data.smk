# Each dataset is decoded/generated once into a uint8 tensor file that every training job loads.


rule prepare_data:
    output:
        f"{RESULTS}/data/{{dataset}}.pt",
    params:
        args=lambda wc: O.prepare_args(config["datasets"][wc.dataset]),
    log:
        f"{RESULTS}/logs/prepare_data/{{dataset}}.log",
    threads: workflow.cores
    conda:
        "../../environment.yml"
    shell:
        "resnet-bench data prepare {params.args} --out {output} > {log} 2>&1"
