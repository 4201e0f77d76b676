# Every variant of both routes checked and measured: the smoke test against the Keras model's own
# generation, fidelity (per-token KL, top-1 and logit correlation on held-out text through every
# signature, whole-continuation agreement, perplexity: against Keras) and its quality gates,
# the op audit, and the benchmark.


# A few lines of Python: on a cluster it runs in the submitting Snakemake, not as a job.
localrules:
    quality_gate,


rule smoke:
    input:
        model="results/{model}/{route}/{variant}.tflite",
        litert_runtime=litert_runtime_files,  # workflow/rules/litert_helpers.smk
        keras_reference="results/{model}/reference/smoke.json",
        blocklist=BLOCKLIST,
        code=stage_code("evaluate.smoke"),
    output:
        "results/{model}/{route}/smoke/{variant}.json",
    log:
        "logs/{model}/{route}/smoke_{variant}.log",
    benchmark:
        "results/benchmarks/{model}/{route}/smoke_{variant}.tsv"
    conda:
        ENV_FILE
    threads: 1
    resources:
        mem_mb=mem_mb("tflite"),
        runtime=runtime_minutes("tflite"),
    params:
        prompts=as_json(SMOKE_PROMPTS),
        keras_match=lambda wildcards: (
            "--require-keras-match" if requires_keras_match(wildcards) else ""
        ),
    shell:
        "python -m llm2tflite.evaluate.smoke --model {input.model:q} --variant {wildcards.variant}"
        " --keras-reference {input.keras_reference:q} --prompts-json {params.prompts:q}"
        " --blocklist {input.blocklist:q} {params.keras_match}"
        " --out {output:q} > {log} 2>&1"


rule fidelity:
    input:
        model="results/{model}/{route}/{variant}.tflite",
        litert_runtime=litert_runtime_files,  # workflow/rules/litert_helpers.smk
        keras_reference="results/{model}/reference/fidelity.json",
        keras_logits="results/{model}/reference/fidelity.logits.npy",
        code=stage_code("evaluate.fidelity"),
    output:
        "results/{model}/{route}/fidelity/{variant}.json",
    log:
        "logs/{model}/{route}/fidelity_{variant}.log",
    benchmark:
        "results/benchmarks/{model}/{route}/fidelity_{variant}.tsv"
    conda:
        ENV_FILE
    threads: 1
    resources:
        mem_mb=mem_mb("tflite"),
        runtime=runtime_minutes("tflite"),
    shell:
        "python -m llm2tflite.evaluate.fidelity variant --model {input.model:q}"
        " --model-name {wildcards.model} --variant {wildcards.variant}"
        " --keras-reference {input.keras_reference:q} --out {output:q} > {log} 2>&1"


# The variant's quality gates (config `quality_gates`) applied to its fidelity figures: this job
# fails with a one-line reason when a gate is missed. Measuring and judging are separate jobs so
# that the figures of a failed variant still reach the summary (which shows FAIL and why), and
# a new threshold is applied without measuring again.
rule quality_gate:
    input:
        fidelity="results/{model}/{route}/fidelity/{variant}.json",
        code=stage_code("evaluate.fidelity"),
    output:
        "results/{model}/{route}/gate/{variant}.json",
    log:
        "logs/{model}/{route}/quality_gate_{variant}.log",
    conda:
        ENV_FILE
    params:
        gates=lambda wildcards: as_json(QUALITY_GATES.get(wildcards.variant) or {}),
    shell:
        "python -m llm2tflite.evaluate.fidelity gate --fidelity {input.fidelity:q}"
        " --gates-json {params.gates:q} --out {output:q} > {log} 2>&1"


rule audit:
    input:
        model="results/{model}/{route}/{variant}.tflite",
        conversion="results/{model}/{route}/{variant}.conversion.json",
        code=stage_code("evaluate.audit"),
    output:
        json="results/{model}/{route}/ops/{variant}.json",
        md=report(
            "results/{model}/{route}/ops/{variant}.md",
            caption="../report/ops.rst",
            category="Op audit",
            subcategory="{model}",
            labels={"model": "{model}", "route": "{route}", "variant": "{variant}"},
        ),
    log:
        "logs/{model}/{route}/audit_{variant}.log",
    benchmark:
        "results/benchmarks/{model}/{route}/audit_{variant}.tsv"
    conda:
        ENV_FILE
    shell:
        "python -m llm2tflite.evaluate.audit --model {input.model:q} --variant {wildcards.variant}"
        " --model-name {wildcards.model} --conversion-report {input.conversion:q}"
        " --out-json {output.json:q} --out-md {output.md:q} > {log} 2>&1"


# One job per model: the TF baseline and every variant, each loaded once in its own process,
# timed in interleaved rounds (llm2tflite.evaluate.bench).
rule bench:
    input:
        unpack(bench_models),
        litert_runtime=litert_runtime_files,  # workflow/rules/litert_helpers.smk
        saved_model="results/{model}/traced",
        code=stage_code("evaluate.bench"),
    output:
        "results/{model}/bench.json",
    log:
        "logs/{model}/bench.log",
    benchmark:
        "results/benchmarks/{model}/bench.tsv"
    conda:
        ENV_FILE
    # All local cores (threads are capped at --cores): nothing else runs during a measurement.
    # On Slurm the job asks for cpus_per_task, the benchmark's own thread count.
    threads: BENCHMARK_EXCLUSIVE_THREADS
    resources:
        mem_mb=bench_mem_mb,
        runtime=lambda wildcards: runtime_minutes("bench")(wildcards) * (1 + len(ROUTE_VARIANTS)),
        cpus_per_task=BENCHMARK["threads"],
    params:
        prompt=BENCHMARK["prompt"],
        runs=BENCHMARK["runs"],
        interpreter_threads=BENCHMARK["threads"],
        entries=bench_entries,
    shell:
        "python -m llm2tflite.evaluate.bench run --model-name {wildcards.model}"
        " --baseline {input.saved_model:q} {params.entries}"
        " --prompt {params.prompt:q} --runs {params.runs} --threads {params.interpreter_threads}"
        " --out {output:q} > {log} 2>&1"
