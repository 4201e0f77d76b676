# The codelab route (files in results/{model}/tflite/, CODELAB_ROUTE): trace once per model,
# convert every variant from that one traced SavedModel (Select TF ops, tokenizer and generation
# loop inside the .tflite).


rule trace:
    input:
        preset=preset_inputs,
        code=stage_code("codelab.trace"),
    output:
        saved_model=directory("results/{model}/traced"),
    log:
        "logs/{model}/trace.log",
    benchmark:
        "results/benchmarks/{model}/trace.tsv"
    conda:
        ENV_FILE
    threads: 2
    resources:
        mem_mb=mem_mb("trace"),
        runtime=runtime_minutes("trace"),
        cpus_per_task=2,
    params:
        preset=preset_of,
        max_length=GENERATION["max_length"],
        sequence_length=GENERATION["sequence_length"],
        sampler=GENERATION["sampler"],
    shell:
        "python -m llm2tflite.codelab.trace --preset {params.preset:q}"
        " --max-length {params.max_length} --sequence-length {params.sequence_length}"
        " --sampler {params.sampler} --out {output.saved_model} > {log} 2>&1"


rule convert:
    input:
        saved_model="results/{model}/traced",
        code=stage_code("codelab.convert"),
    output:
        tflite="results/{model}/tflite/{variant}.tflite",
        report="results/{model}/tflite/{variant}.conversion.json",
    log:
        "logs/{model}/convert_{variant}.log",
    benchmark:
        "results/benchmarks/{model}/convert_{variant}.tsv"
    conda:
        ENV_FILE
    threads: 2
    resources:
        mem_mb=mem_mb("convert"),
        runtime=runtime_minutes("convert"),
        cpus_per_task=2,
    params:
        options=quantization_options,
    shell:
        "python -m llm2tflite.codelab.convert --saved-model {input.saved_model}"
        " --variant {wildcards.variant} --options-json {params.options:q}"
        " --out {output.tflite} --report {output.report}"
        " > {log} 2>&1"
