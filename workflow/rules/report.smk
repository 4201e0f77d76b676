# The decision table: op audit, benchmark, summary, plots, and the Android hand-off.


rule audit:
    output:
        json="results/{model}/ops/{variant}.json",
        md=report(
            "results/{model}/ops/{variant}.md",
            caption="../report/ops.rst",
            category="Op audit",
            subcategory="{model}",
            labels={"model": "{model}", "variant": "{variant}"},
        ),
    input:
        tflite="results/{model}/tflite/{variant}.tflite",
        conversion="results/{model}/tflite/{variant}.conversion.json",
        code=stage_code("audit"),
    log:
        "logs/{model}/audit_{variant}.log",
    benchmark:
        "results/benchmarks/{model}/audit_{variant}.tsv"
    conda:
        ENV_FILE
    shell:
        "python -m llm2tflite.audit --model {input.tflite} --variant {wildcards.variant}"
        " --model-name {wildcards.model} --conversion-report {input.conversion}"
        " --out-json {output.json} --out-md {output.md} > {log} 2>&1"


rule bench_tflite:
    output:
        "results/{model}/bench/{variant}.json",
    input:
        tflite="results/{model}/tflite/{variant}.tflite",
        saved_model="results/{model}/traced",
        code=stage_code("bench", "runtime", "trace", "audit"),
    params:
        prompt=BENCHMARK["prompt"],
        runs=BENCHMARK["runs"],
        interpreter_threads=BENCHMARK["threads"],
    # All local cores (threads are capped at --cores): nothing else runs during a measurement.
    # On Slurm the job asks for cpus_per_task, the benchmark's own thread count.
    threads: BENCHMARK_EXCLUSIVE_THREADS
    resources:
        mem_mb=mem_mb("tflite"),
        runtime=runtime_minutes("bench"),
        cpus_per_task=BENCHMARK["threads"],
    log:
        "logs/{model}/bench_{variant}.log",
    benchmark:
        "results/benchmarks/{model}/bench_{variant}.tsv"
    conda:
        ENV_FILE
    shell:
        "python -m llm2tflite.bench --model {input.tflite} --variant {wildcards.variant}"
        " --model-name {wildcards.model} --prompt {params.prompt:q} --runs {params.runs}"
        " --threads {params.interpreter_threads}"
        " --export-info {input.saved_model}/llm2tflite_export.json --out {output} > {log} 2>&1"


rule bench_tf:
    output:
        "results/{model}/bench/tf.json",
    input:
        saved_model="results/{model}/traced",
        code=stage_code("bench", "runtime", "trace", "audit"),
    params:
        prompt=BENCHMARK["prompt"],
        runs=BENCHMARK["runs"],
        interpreter_threads=BENCHMARK["threads"],
    threads: BENCHMARK_EXCLUSIVE_THREADS
    resources:
        mem_mb=mem_mb("trace"),
        runtime=runtime_minutes("bench"),
        cpus_per_task=BENCHMARK["threads"],
    log:
        "logs/{model}/bench_tf.log",
    benchmark:
        "results/benchmarks/{model}/bench_tf.tsv"
    conda:
        ENV_FILE
    shell:
        "python -m llm2tflite.bench --saved-model {input.saved_model} --variant tf"
        " --model-name {wildcards.model} --prompt {params.prompt:q} --runs {params.runs}"
        " --threads {params.interpreter_threads} --out {output} > {log} 2>&1"


rule benchmark_table:
    output:
        report(
            "results/benchmarks.csv",
            caption="../report/benchmarks.rst",
            category="Benchmarks",
        ),
    input:
        runs=benchmark_jsons(),
        code=stage_code("bench", "runtime", "trace", "audit"),
    log:
        "logs/benchmark_table.log",
    conda:
        ENV_FILE
    shell:
        "python -m llm2tflite.bench table --inputs {input.runs} --out {output} > {log} 2>&1"


rule summary:
    output:
        md=report("results/summary.md", caption="../report/summary.rst", category="Summary"),
        plots=report(
            expand("results/plots/{model}.png", model=MODELS),
            caption="../report/plot.rst",
            category="Trade-offs",
        ),
    input:
        benchmarks="results/benchmarks.csv",
        fidelity=per_variant_files("fidelity"),
        ops=per_variant_files("ops"),
        smoke=per_variant_files("smoke"),
        code=stage_code("summary", "audit"),
    params:
        plot_dir=lambda wildcards, output: Path(output.plots[0]).parent,
    log:
        "logs/summary.log",
    conda:
        ENV_FILE
    shell:
        "python -m llm2tflite.summary --benchmarks {input.benchmarks}"
        " --fidelity {input.fidelity} --ops {input.ops} --smoke {input.smoke}"
        " --out-md {output.md} --plot-dir {params.plot_dir} > {log} 2>&1"


rule android_assets:
    output:
        model=f"results/android/app/src/main/assets/{ANDROID_ASSET}",
        json="results/android/app/src/main/assets/autocomplete.json",
    input:
        unpack(android_inputs),  # workflow/rules/litertlm.smk: the chosen route's files
        code=stage_code("android", "runtime", "trace", "litert_runtime", "litert_export",
                        "sampling", "tokenizer_files", "generation"),
    params:
        model=ANDROID_MODEL,
        variant=ANDROID_VARIANT,
        prompt=BENCHMARK["prompt"],
        route_arguments=android_route_arguments,
    log:
        "logs/android_assets.log",
    conda:
        ENV_FILE
    shell:
        "python -m llm2tflite.android {params.route_arguments} --model-name {params.model}"
        " --variant {params.variant} --prompt {params.prompt:q}"
        " --out-model {output.model} --out-json {output.json} > {log} 2>&1"
