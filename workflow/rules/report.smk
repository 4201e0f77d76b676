# What covers all the config's models, in results/reports/<config name>/: the benchmark table,
# the summary and its plots, the Android hand-off, and the manifest (SHA-256 of every artifact
# and the package versions: compare two runs at a glance).


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
        quality_plots=report(
            expand(report_path("plots/{model}_quality.png"), model=MODELS),
            caption="../report/quality_plot.rst",
            category="Trade-offs",
        ),
        fidelity_csv=report(
            report_path("fidelity.csv"), caption="../report/fidelity.rst", category="Fidelity"
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
        " --out-md {output.md:q} --plot-dir {params.plot_dir:q}"
        " --out-fidelity-csv {output.fidelity_csv:q} > {log} 2>&1"


rule android:
    input:
        unpack(android_inputs),  # workflow/rules/common.smk: the route's files
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


rule manifest:
    input:
        artifacts=manifest_inputs(),
        code=stage_code("report.manifest"),
    output:
        report_path("manifest.json"),
    log:
        report_log("manifest"),
    conda:
        ENV_FILE
    params:
        # The demo pages' vendored JavaScript packages (inside a runtime directory listed among
        # the artifacts): workflow/rules/web.smk.
        npm=" ".join(f"--npm-versions {shlex.quote(f)}" for f in web_versions_file()),
    shell:
        "python -m llm2tflite.report.manifest --out {output} {params.npm} {input.artifacts} > {log} 2>&1"
