# Run records -> pandas tables (CSV + Markdown), side by side with the papers' numbers, and the
# papers' claims tested on the grid (claims.csv has its own caption: the decision rule, passed
# as a param so that the caption prints the rule the table was decided by).
from resnet_bench.tables.claims import DECISION_RULE


rule tables:
    input:
        SUMMARIES,
    output:
        [
            (
                report(f, category="Tables", caption=f"../report/{O.table_caption(f)}.rst")
                if f.endswith(".csv")
                else f
            )
            for f in TABLE_FILES
        ],
    log:
        f"{OUT}/logs/tables.log",
    conda:
        "../../environment.yml"
    params:
        runs=RUN_DIRS,
        out=lambda wc, output: os.path.dirname(output[0]),
        claims=["--claims", *config["claims"]] if config.get("claims") else [],
        # another machine's runs of this design (config/README.md): each run counted once
        roots=["--roots", *config["extra_results"]] if config.get("extra_results") else [],
        decision_rule=DECISION_RULE,  # read by ../report/claims.rst
    shell:
        "resnet-bench aggregate --runs {params.runs:q} --out {params.out:q} {params.claims:q} "
        "{params.roots:q} > {log:q} 2>&1"
