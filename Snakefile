# resnet-bench: config -> runs -> per-run records -> tables -> figures.
# `snakemake --cores all` runs config/config.yaml (quick, embedded data, CPU);
# `--configfile config/<preset>.yaml` runs a paper experiment. Rules are thin: every step is a
# `resnet-bench` subcommand whose logic lives (and is tested) in the resnet_bench package.
from snakemake.utils import min_version

min_version("9.0")


# A preset given with --configfile replaces the default config (it is not merged into it, so no
# default grid or analysis leaks into a paper experiment); --config KEY=VALUE still edits either.
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/analysis.smk"


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        TABLE_FILES,
        FIGURE_FILES,
        ANALYSIS_FILES,
