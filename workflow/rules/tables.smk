# Run records -> pandas tables (CSV + Markdown), side by side with the papers' numbers.


rule tables:
    input:
        SUMMARIES,
    output:
        [
            report(f, category="Tables", caption="../report/tables.rst") if f.endswith(".csv") else f
            for f in TABLE_FILES
        ],
    params:
        runs=RUN_DIRS,
        out=lambda wc, output: os.path.dirname(output[0]),
    log:
        f"{OUT}/logs/tables.log",
    conda:
        "../../environment.yml"
    shell:
        "resnet-bench aggregate --runs {params.runs} --out {params.out} > {log} 2>&1"
