# The resource model of the rules (threads, memory, runtime) for local scheduling and Slurm:
# functions of the model's size, computed from the config (nothing built).

# Local runs cap threads at --cores, so this gives a benchmark job the whole machine.
BENCHMARK_EXCLUSIVE_THREADS = 1024


# Peak memory grows with the number of weights. Measured peak RSS (/usr/bin/time -v, 2 cores):
# GPT-2 124M twin: trace 1.5 GB; convert fp32 4.1 GB, int8 3.0 GB; Keras reference 1.4 GB;
# TF baseline benchmark 1.7 GB; TFLite benchmark 1.2 GB; LiteRT route: export 1.6 GB, fp32
# conversion 3.5 GB, quantization 0.9 GB. Gemma 3 270M twin (268M, 262,144-row embedding):
# trace 3.9 GB; convert fp32 7.7 GB, int8 4.6 GB; LiteRT export 3.9 GB, fp32 conversion 7.2 GB,
# quantization 1.9 GB. The default models (0.7 and 0.9 M parameters) stay under 1.5 GB. MB per
# million parameters above a fixed TensorFlow baseline, with ~20-25% margin over those figures:
MEMORY_BASE_MB = 2000
MEMORY_MB_PER_MILLION_PARAMETERS = {
    "train": 20,
    "trace": 10,
    "convert": 30,
    "keras": 12,
    "tflite": 8,
    "litert_export": 10,
    "litert_convert": 28,
    "litert_quantize": 5,
}


def model_parameters(model):
    """Parameters of a model, computed by its family module from the config (nothing built)."""
    source = model_source(model)
    family = registry.for_model_source(source)
    if "train" in source:
        return family.parameter_count(
            {
                **family.train_model_config(source["train"]["model"]),
                "vocabulary_size": source["train"]["vocabulary"]["size"],
            }
        )
    return family.parameter_count(
        registry.for_preset(source.get("shape_of") or source["preset"])[1]
    )


# The benchmark keeps every model of a model name loaded at once, one process each. Measured
# peak RSS per process (bench.json): tiny TF 892 MiB, TFLite 565 MiB; 124M twin TF 1645 MiB,
# TFLite fp32 1102 MiB, int8 1002 MiB (in all 3.7 GiB; this gives 6.2 GB).
BENCH_WORKER_BASE_MB = 1000


def bench_mem_mb(wildcards):
    """Memory of a model's benchmark job: the TF baseline's process and one per variant."""
    millions = model_parameters(wildcards.model) / 1e6
    per_worker = {"trace": 1, "tflite": len(ROUTE_VARIANTS)}
    return int(
        sum(
            count * (BENCH_WORKER_BASE_MB + MEMORY_MB_PER_MILLION_PARAMETERS[stage] * millions)
            for stage, count in per_worker.items()
        )
    )


def mem_mb(stage):
    """A rule's memory (MB) for its model: Snakemake never runs jobs that together exceed it."""
    per_million = MEMORY_MB_PER_MILLION_PARAMETERS[stage]

    def for_job(wildcards):
        return int(MEMORY_BASE_MB + per_million * model_parameters(wildcards.model) / 1e6)

    return for_job


def runtime_minutes(stage):
    """Slurm time limit: generous, scaled with model size (minutes)."""

    def for_job(wildcards):
        millions = model_parameters(wildcards.model) / 1e6
        return int(
            30
            + {"train": 1.0, "trace": 0.5, "convert": 0.5, "bench": 0.3}.get(stage, 0.2) * millions
        )

    return for_job
