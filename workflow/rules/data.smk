# Public datasets (a `datasets:` entry with a `source`) are downloaded into their `root` when it
# is absent and kept only if their content is the recorded one; then each dataset is decoded or
# generated once into a uint8 tensor file that every training job loads.


for _i, (_root, _args) in enumerate(G.fetch_targets(config).items()):
    _fetch = "fetch_data" + (f"_{_i}" if _i else "")

    rule:
        name:
            _fetch
        output:
            _root,
        log:
            f"{RESULTS}/logs/{_fetch}.log",
        benchmark:
            f"{RESULTS}/benchmarks/{_fetch}.tsv"
        # a download: on the machine running Snakemake, since cluster nodes often have no network
        localrule: True
        conda:
            "../../environment.yml"
        params:
            args=_args,
        shell:
            "resnet-bench data fetch {params.args:q} --out {output:q} > {log:q} 2>&1"


rule prepare_data:
    input:
        lambda wc: O.prepare_inputs(config["datasets"][wc.dataset]),
    output:
        f"{RESULTS}/data/{{dataset}}.pt",
    log:
        f"{RESULTS}/logs/prepare_data/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_data/{{dataset}}.tsv"
    conda:
        "../../environment.yml"
    # A fixed count, not workflow.cores: Snakemake caps it at --cores, and `snakemake --unlock`
    # or `--report` (run without --cores) would otherwise fail asking for a core count.
    threads: 4
    params:
        args=lambda wc: O.prepare_args(config["datasets"][wc.dataset]),
    # params.args is quoted item by item (shlex.quote, resnet_bench.pipeline.outputs)
    shell:
        "resnet-bench data prepare {params.args} --out {output:q} > {log:q} 2>&1"
