# Config validation and the run grid. Everything that is not a schema check lives in
# resnet_bench.pipeline, so the naming rule and the grid expansion are unit-tested.
import os

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from resnet_bench.pipeline import grid as G
from resnet_bench.pipeline import resources as R
from resnet_bench.pipeline import outputs as O
from resnet_bench.pipeline import launch as L
from resnet_bench.infra import strict as S
from resnet_bench.models.spec import model_name_pattern

SCHEMA = os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml")

# One-line refusals naming the key, the value and what is allowed (the trainer's own rules: the
# recipe knobs and the dataset kinds), before any job starts or any file is written.
try:
    for _path in workflow.configfiles:  # Snakemake's loaders keep the last of a repeated key
        S.config_file(_path)
    G.check_schema(config, SCHEMA)
    validate(config, schema="../schemas/config.schema.yaml")  # fills in the schema's defaults
    RUNS = G.validate(config)
    G.check_results_dir(config["results"])
except ValueError as exc:
    raise WorkflowError(f"config: {exc}") from None

RESULTS = config["results"]
EXP = config["experiment"]
OUT = f"{RESULTS}/{EXP}"
RUN_DIRS = G.run_dirs(RUNS, RESULTS, EXP)
SUMMARIES = [f"{d}/summary.json" for d in RUN_DIRS]
TABLE_FILES = O.table_files(OUT)
FIGURE_NAMES = O.figure_names(RUNS)  # V2 Fig. 3 / Fig. 6 only when the grid has their variants
FIGURE_FILES = O.figure_files(OUT, RUNS)
ANALYSIS_FILES = O.analysis_files(OUT, config)


# runs_per_gpu: K > 1 packs K trainings into one cluster job: they form the group `gpupack` with
# K components (locally groups are inactive, and the GPU slot pool shares the GPUs instead).
RUNS_PER_GPU = config.get("runs_per_gpu", 1)
# gpus_per_run / ranks_per_run > 1: each run is one torchrun of several ranks (DDP), started by
# `resnet-bench launch` (resnet_bench/pipeline/launch.py); its job asks for every rank's threads.
LAYOUT = L.layout(config)
if workflow.is_main_process and not workflow.local_exec:
    _problem = R.cluster_cores_problem(
        LAYOUT, RUNS_PER_GPU, config["threads_per_run"], workflow.cores
    )
    if _problem:
        raise WorkflowError(_problem)


def train_input_data(wc):
    """The run's prepared data set; first, for runs_per_gpu > 1, the pack size as the group
    components (here: Snakemake installs the command line's group settings only after the
    Snakefile has been parsed). An internal of Snakemake 9, for want of a documented way: the
    Slurm executor passes no group arguments to the Snakemake inside each job and that process
    reads no profile, yet it must know the pack to run its trainings side by side."""
    if RUNS_PER_GPU > 1:
        import immutables

        settings = workflow.group_settings
        try:
            components = R.pack_components(settings.group_components, RUNS_PER_GPU)
        except ValueError as exc:
            raise WorkflowError(str(exc)) from None
        settings.group_components = immutables.Map(components)
    return G.prepared_path(RESULTS, wc.dataset)


# the names the config schema allows for its `datasets` and `recipes` entries
wildcard_constraints:
    dataset=G.key_pattern(SCHEMA, "datasets"),
    recipe=G.key_pattern(SCHEMA, "recipes"),
    model=model_name_pattern(),
    seed=r"\d+",


localrules:
    all,
    tables,
    figures,
    depth_challenge,
