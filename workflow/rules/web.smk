# The demo pages (issue 18): each model's LiteRT-route file run in the browser by LiteRT.js,
# results/reports/<config>/web/<model>/, sharing results/reports/<config>/web/runtime/ (the
# vendored JavaScript packages). llm2tflite/web/page.py documents the layout;
# `python -m llm2tflite serve` serves it. The packages come from `npm ci` of
# llm2tflite/web/package-lock.json into web.node_env (a local rule: it needs the npm registry).
# Settings and helpers: workflow/rules/web_common.smk.
localrules:
    web_node_env,


rule web_node_env:
    input:
        package=project_path(PACKAGE_DIR / "web" / "package.json"),
        lock=project_path(PACKAGE_DIR / "web" / "package-lock.json"),
        code=stage_code("web.node_env"),
    output:
        f"{WEB_NODE_ENV}/{WEB_NODE_ENV_MARKER}",
    log:
        "logs/web_node_env.log",
    conda:
        "../../envs/web-node.yaml"
    params:
        directory=lambda wildcards, output: str(Path(output[0]).parent),
    shell:
        "python -m llm2tflite.web.node_env --dir {params.directory:q} > {log} 2>&1"


rule web_runtime:
    input:
        env=rules.web_node_env.output,
        code=stage_code("web.vendor"),
    output:
        directory(report_path(f"web/{WEB_RUNTIME_DIR_NAME}")),
    log:
        report_log("web_runtime"),
    conda:
        ENV_FILE
    params:
        node_modules=lambda wildcards, input: str(Path(input.env[0]).parent / "node_modules"),
    shell:
        "python -m llm2tflite.web.vendor --node-modules {params.node_modules:q}"
        " --out {output:q} > {log} 2>&1"


rule web_page:
    input:
        tflite=f"results/{{model}}/litert/{WEB_VARIANT}.tflite",
        info="results/{model}/litert/litert_export.json",
        tokenizer=lambda wildcards: litert_tokenizer_file(wildcards.model),
        blocklist=BLOCKLIST,
        static=[project_path(PACKAGE_DIR / "web" / "static" / n) for n in WEB_STATIC_FILES],
        code=stage_code("web.page"),
    output:
        directory(report_path("web/{model}")),
    log:
        report_log("web_page_{model}"),
    wildcard_constraints:
        model="|".join(WEB_MODELS) or "(?!)",
    conda:
        ENV_FILE
    params:
        variant=WEB_VARIANT,
        threads=WEB_THREADS,
    shell:
        "python -m llm2tflite.web.page --litert-dir results/{wildcards.model}/litert"
        " --variant {params.variant} --model {wildcards.model} --blocklist {input.blocklist:q}"
        " --threads {params.threads} --out {output:q} > {log} 2>&1"
