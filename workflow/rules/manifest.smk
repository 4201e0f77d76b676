# SHA-256 of every artifact and the package versions: compare two runs at a glance.


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
    shell:
        "python -m llm2tflite.report.manifest --out {output} {input.artifacts} > {log} 2>&1"
