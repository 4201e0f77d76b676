# What each variant's quantization costs: greedy agreement and perplexity against Keras.


rule eval_corpus:
    input:
        code=stage_code("inputs.corpus"),
    output:
        train=temp("results/eval_corpus/train.txt"),
        heldout="results/eval_corpus/heldout.txt",
    log:
        "logs/eval_corpus.log",
    benchmark:
        "results/benchmarks/eval_corpus.tsv"
    conda:
        ENV_FILE
    params:
        seed=EVAL_CORPUS_SEED,
        train_lines=EVAL_CORPUS_TRAIN_LINES,
        lines=EVAL_CORPUS_LINES,
    shell:
        "python -m llm2tflite.inputs.corpus --seed {params.seed} --train-lines {params.train_lines}"
        " --heldout-lines {params.lines} --out-train {output.train}"
        " --out-heldout {output.heldout} > {log} 2>&1"


rule keras_fidelity_reference:
    input:
        preset=preset_inputs,
        text=heldout_text,
        code=stage_code("evaluate.fidelity"),
    output:
        "results/{model}/reference/fidelity.json",
    log:
        "logs/{model}/keras_fidelity_reference.log",
    benchmark:
        "results/benchmarks/{model}/keras_fidelity_reference.tsv"
    conda:
        ENV_FILE
    threads: 2
    resources:
        mem_mb=mem_mb("keras"),
        runtime=runtime_minutes("keras"),
        cpus_per_task=2,
    params:
        preset=preset_of,
        max_length=GENERATION["max_length"],
        sampler=GENERATION["sampler"],
        prompts=as_json(FIDELITY["prompts"]),
        lines=FIDELITY["perplexity_lines"],
    shell:
        "python -m llm2tflite.evaluate.fidelity keras --preset {params.preset:q}"
        " --max-length {params.max_length} --sampler {params.sampler}"
        " --prompts-json {params.prompts:q} --text {input.text} --lines {params.lines}"
        " --out {output} > {log} 2>&1"


rule fidelity:
    input:
        model="results/{model}/{route}/{variant}.tflite",
        litert_runtime=litert_runtime_files,  # workflow/rules/litert_common.smk
        keras_reference="results/{model}/reference/fidelity.json",
        text=heldout_text,
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
        " --keras-reference {input.keras_reference:q} --text {input.text:q}"
        " --out {output:q} > {log} 2>&1"


# A few lines of Python: on a cluster it runs in the submitting Snakemake, not as a job.
localrules:
    quality_gate,


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
