# Tables -> the papers' figures, one set per (dataset, recipe) of the grid. Figures read only the
# tables, so restyling re-renders without retraining: `snakemake --forcerun figures`.


rule figures:
    input:
        rules.tables.output,
    output:
        [
            (
                report(
                    f"{OUT}/figures/{{dataset}}/{{recipe}}/{fig}.{ext}",
                    caption=f"../report/{fig}.rst",
                    category="Figures",
                    subcategory="{dataset} / {recipe}",
                )
                if ext == "png"
                else f"{OUT}/figures/{{dataset}}/{{recipe}}/{fig}.{ext}"
            )
            for fig in FIGURE_NAMES
            for ext in O.FIGURE_FORMATS
        ],
    log:
        f"{OUT}/logs/figures/{{dataset}}/{{recipe}}.log",
    conda:
        "../../environment.yml"
    params:
        tables=lambda wc, input: os.path.dirname(input[0]),
        out=lambda wc, output: os.path.dirname(output[0]),
        figures=FIGURE_NAMES,
    shell:
        "resnet-bench plot --tables {params.tables:q} --out {params.out:q} "
        "--figure {params.figures:q} --dataset {wildcards.dataset:q} "
        "--recipe {wildcards.recipe:q} > {log:q} 2>&1"
