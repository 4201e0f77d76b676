# The decision table: op audit, benchmark, summary, plots, and the Android hand-off.


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
        litert_runtime=litert_runtime_files,  # workflow/rules/litert_common.smk
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


rule benchmark_table:
    input:
        runs=benchmark_jsons(),
        code=stage_code("evaluate.bench"),
    output:
        report(
            report_path("benchmarks.csv"),
            caption="../report/benchmarks.rst",
            category="Benchmarks",
        ),
    log:
        report_log("benchmark_table"),
    conda:
        ENV_FILE
    shell:
        "python -m llm2tflite.evaluate.bench table --inputs {input.runs:q} --out {output:q} > {log} 2>&1"


rule summary:
    input:
        benchmarks=report_path("benchmarks.csv"),
        fidelity=per_variant_files("fidelity"),
        ops=per_variant_files("ops"),
        smoke=per_variant_files("smoke"),
        code=stage_code("report.summary"),
    output:
        md=report(report_path("summary.md"), caption="../report/summary.rst", category="Summary"),
        plots=report(
            expand(report_path("plots/{model}.png"), model=MODELS),
            caption="../report/plot.rst",
            category="Trade-offs",
        ),
    log:
        report_log("summary"),
    conda:
        ENV_FILE
    params:
        plot_dir=lambda wildcards, output: Path(output.plots[0]).parent,
        gates=as_json(QUALITY_GATES),
    shell:
        "python -m llm2tflite.report.summary --benchmarks {input.benchmarks:q}"
        " --fidelity {input.fidelity:q} --ops {input.ops:q} --smoke {input.smoke:q}"
        " --gates-json {params.gates:q}"
        " --out-md {output.md:q} --plot-dir {params.plot_dir:q} > {log} 2>&1"


rule android:
    input:
        unpack(android_inputs),  # workflow/rules/litert_common.smk: the route's files
        code=stage_code("report.android"),
    output:
        model=report_path(f"android/app/src/main/assets/{ANDROID_ASSET}"),
        json=report_path("android/app/src/main/assets/autocomplete.json"),
    log:
        report_log("android"),
    conda:
        ENV_FILE
    params:
        model=ANDROID_MODEL,
        variant=ANDROID_VARIANT,
        prompt=BENCHMARK["prompt"],
        route_arguments=android_route_arguments,
    shell:
        "python -m llm2tflite.report.android {params.route_arguments} --model-name {params.model}"
        " --variant {params.variant} --prompt {params.prompt:q}"
        " --out-model {output.model} --out-json {output.json} > {log} 2>&1"
