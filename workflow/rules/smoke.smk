# Run every variant in the TFLite interpreter against the Keras model's own generation.


rule reference:
    input:
        preset=preset_inputs,
        code=stage_code("inputs.reference"),
    output:
        "results/{model}/reference/smoke.json",
    log:
        "logs/{model}/reference.log",
    benchmark:
        "results/benchmarks/{model}/reference.tsv"
    conda:
        ENV_FILE
    threads: 1
    resources:
        mem_mb=mem_mb("keras"),
        runtime=runtime_minutes("keras"),
    params:
        preset=preset_of,
        max_length=GENERATION["max_length"],
        sampler=GENERATION["sampler"],
        prompts=as_json(SMOKE_PROMPTS),
    shell:
        "python -m llm2tflite.inputs.reference --preset {params.preset:q}"
        " --max-length {params.max_length} --sampler {params.sampler}"
        " --prompts-json {params.prompts:q} --out {output} > {log} 2>&1"


rule smoke:
    input:
        model="results/{model}/{route}/{variant}.tflite",
        litert_runtime=litert_runtime_files,  # workflow/rules/litert_common.smk
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
