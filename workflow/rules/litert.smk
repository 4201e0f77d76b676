# The LiteRT route (files in results/{model}/litert/, LITERT_ROUTE): KerasHub causal LM ->
# prefill/decode SavedModel with the KV cache outside (llm2tflite/litert/export.py documents the
# contract) -> builtins-only fp32 .tflite -> ai-edge-quantizer int8 / int4; and the tokenizer
# outside the graph, next to the LiteRT model (results/{model}/litert/tokenizer.json or
# tokenizer.model, by the family's tokenizer kind: llm2tflite/litert/runtime_tokenizer.py). The
# export info and the tokenizer are embedded in every .tflite too (llm2tflite/litert/embedded.py).
# Settings and helpers: workflow/rules/litert_helpers.smk.


rule litert_export:
    input:
        preset=preset_inputs,
        code=stage_code("litert.export"),
    output:
        saved_model=directory("results/{model}/litert/saved_model"),
        info="results/{model}/litert/litert_export.json",
    log:
        "logs/{model}/litert_export.log",
    benchmark:
        "results/benchmarks/{model}/litert_export.tsv"
    conda:
        ENV_FILE
    threads: 2
    resources:
        mem_mb=mem_mb("litert_export"),
        runtime=runtime_minutes("trace"),
        cpus_per_task=2,
    params:
        preset=preset_of,
        cache_length=LITERT["cache_length"],
        prefill_lengths=" ".join(map(str, LITERT["prefill_lengths"])),
        prefill_logits="--prefill-logits" if LITERT["prefill_logits"] else "",
        chat_template=lambda wildcards: as_json(LITERT["chat_templates"].get(wildcards.model) or {}),
    shell:
        "python -m llm2tflite.litert.export --preset {params.preset:q}"
        " --cache-length {params.cache_length} --prefill-lengths {params.prefill_lengths}"
        " {params.prefill_logits} --chat-template-json {params.chat_template:q}"
        " --out {output.saved_model} --info {output.info} > {log} 2>&1"


rule litert_convert:
    input:
        saved_model="results/{model}/litert/saved_model",
        # Embedded in the .tflite with the export info (llm2tflite/litert/embedded.py).
        tokenizer=lambda wildcards: litert_tokenizer_file(wildcards.model),
        code=stage_code("litert.convert"),
    output:
        tflite="results/{model}/litert/fp32.tflite",
        report="results/{model}/litert/fp32.conversion.json",
    log:
        "logs/{model}/litert_convert_fp32.log",
    benchmark:
        "results/benchmarks/{model}/litert_convert_fp32.tsv"
    conda:
        ENV_FILE
    threads: 2
    resources:
        mem_mb=mem_mb("litert_convert"),
        runtime=runtime_minutes("convert"),
        cpus_per_task=2,
    shell:
        "python -m llm2tflite.litert.convert --saved-model {input.saved_model}"
        " --tokenizer {input.tokenizer} --out {output.tflite} --report {output.report}"
        " > {log} 2>&1"


rule litert_quantize:
    input:
        fp32="results/{model}/litert/fp32.tflite",
        code=stage_code("litert.quantize"),
    output:
        tflite="results/{model}/litert/{variant}.tflite",
        report="results/{model}/litert/{variant}.conversion.json",
    log:
        "logs/{model}/litert_quantize_{variant}.log",
    benchmark:
        "results/benchmarks/{model}/litert_quantize_{variant}.tsv"
    wildcard_constraints:
        variant="|".join(LITERT_RECIPES),
    conda:
        ENV_FILE
    threads: 1
    resources:
        mem_mb=mem_mb("litert_quantize"),
        runtime=runtime_minutes("convert"),
        cpus_per_task=1,
    shell:
        "python -m llm2tflite.litert.quantize --fp32 {input.fp32} --variant {wildcards.variant}"
        " --out {output.tflite} --report {output.report} > {log} 2>&1"


rule runtime_tokenizer:
    input:
        preset=preset_inputs,
        code=stage_code("litert.runtime_tokenizer"),
    output:
        "results/{model}/litert/{tokenizer_file}",
    log:
        "logs/{model}/runtime_tokenizer_{tokenizer_file}.log",
    wildcard_constraints:
        tokenizer_file="tokenizer\\.json|tokenizer\\.model",
    conda:
        ENV_FILE
    params:
        preset=preset_of,
    shell:
        "python -m llm2tflite.litert.runtime_tokenizer --preset {params.preset:q}"
        " --out-dir results/{wildcards.model}/litert > {log} 2>&1"
