# What the conversions start from and are compared with: the models the workflow builds itself,
# each ending as a KerasHub preset directory, and the Keras model's own outputs.
#   train:    corpus -> vocabulary of the family's tokenizer kind (byte-level BPE, SentencePiece)
#             -> small model of the family trained with Keras (the offline default models);
#   shape_of: a preset's architecture with seeded random weights and a tokenizer of the family's
#             kind: fetched (GPT-2's real files) or learned on the corpus (SentencePiece families,
#             Llama 3's and Qwen's byte-level BPE),
#             as the family module says (Architecture.twin_tokenizer);
#   the held-out text for perplexity of models without a corpus of their own (eval_corpus), and
#   the Keras references every variant is checked against (smoke test, fidelity).


rule corpus:
    input:
        code=stage_code("inputs.corpus"),
    output:
        train="results/{model}/corpus/train.txt",
        heldout="results/{model}/corpus/heldout.txt",
    log:
        "logs/{model}/corpus.log",
    benchmark:
        "results/benchmarks/{model}/corpus.tsv"
    wildcard_constraints:
        model=models_learning_tokenizer(),
    conda:
        ENV_FILE
    params:
        corpus=corpus_setting,
    shell:
        "python -m llm2tflite.inputs.corpus --seed {params.corpus[seed]}"
        " --train-lines {params.corpus[train_lines]} --heldout-lines {params.corpus[heldout_lines]}"
        " --out-train {output.train} --out-heldout {output.heldout} > {log} 2>&1"


rule vocab:
    input:
        corpus="results/{model}/corpus/train.txt",
        code=stage_code("inputs.vocab"),
    output:
        vocab="results/{model}/vocab/vocab.json",
        merges="results/{model}/vocab/merges.txt",
    log:
        "logs/{model}/vocab.log",
    benchmark:
        "results/benchmarks/{model}/vocab.tsv"
    wildcard_constraints:
        model=models_with_tokenizer("byte_level_bpe"),
    conda:
        ENV_FILE
    params:
        size=vocab_size_option,
        architecture=architecture_name,
        out_dir=subpath(output.vocab, parent=True),
    shell:
        "python -m llm2tflite.inputs.vocab --architecture {params.architecture} --corpus {input.corpus}"
        " {params.size} --out-dir {params.out_dir} > {log} 2>&1"


rule vocab_sentencepiece:
    input:
        corpus="results/{model}/corpus/train.txt",
        code=stage_code("inputs.vocab"),
    output:
        model="results/{model}/vocab/tokenizer.model",
    log:
        "logs/{model}/vocab.log",
    benchmark:
        "results/benchmarks/{model}/vocab.tsv"
    wildcard_constraints:
        model=models_with_tokenizer("sentencepiece"),
    conda:
        ENV_FILE
    params:
        size=vocab_size_option,
        architecture=architecture_name,
        out_dir=subpath(output.model, parent=True),
    shell:
        "python -m llm2tflite.inputs.vocab --architecture {params.architecture} --corpus {input.corpus}"
        " {params.size} --out-dir {params.out_dir} > {log} 2>&1"


rule train:
    input:
        train="results/{model}/corpus/train.txt",
        heldout="results/{model}/corpus/heldout.txt",
        tokenizer=lambda wildcards: tokenizer_files(wildcards.model),
        code=stage_code("inputs.train"),
    output:
        preset=directory("results/{model}/preset"),
        metrics="results/{model}/train_metrics.json",
    log:
        "logs/{model}/train.log",
    benchmark:
        "results/benchmarks/{model}/train.tsv"
    wildcard_constraints:
        model=models_matching("train"),
    conda:
        ENV_FILE
    threads: 2
    resources:
        mem_mb=mem_mb("train"),
        runtime=runtime_minutes("train"),
        cpus_per_task=2,
    params:
        architecture=lambda wildcards: registry.for_model_source(model_source(wildcards.model)).name,
        model=lambda wildcards: as_json(train_setting("model")(wildcards)),
        fit=lambda wildcards: as_json(train_setting("fit")(wildcards)),
        vocab_dir=lambda wildcards: f"results/{wildcards.model}/vocab",
    shell:
        "python -m llm2tflite.inputs.train --corpus {input.train} --heldout {input.heldout}"
        " --vocab-dir {params.vocab_dir} --architecture {params.architecture}"
        " --model-json {params.model:q} --fit-json {params.fit:q}"
        " --out-preset {output.preset} --out-metrics {output.metrics} > {log} 2>&1"


rule gpt2_assets:
    input:
        code=stage_code("families.gpt2_assets"),
    output:
        vocab="results/{model}/gpt2_tokenizer/vocab.json",
        merges="results/{model}/gpt2_tokenizer/merges.txt",
    log:
        "logs/{model}/gpt2_assets.log",
    wildcard_constraints:
        model=twins_with_tokenizer("published"),
    conda:
        ENV_FILE
    params:
        out_dir=subpath(output.vocab, parent=True),
    shell:
        "python -m llm2tflite.families.gpt2_assets --out-dir {params.out_dir} > {log} 2>&1"


rule twin:
    input:
        tokenizer=twin_tokenizer_files,
        code=stage_code("inputs.twin"),
    output:
        preset=directory("results/{model}/preset"),
    log:
        "logs/{model}/twin.log",
    benchmark:
        "results/benchmarks/{model}/twin.tsv"
    wildcard_constraints:
        model=models_matching("shape_of"),
    conda:
        ENV_FILE
    threads: 2
    resources:
        mem_mb=mem_mb("keras"),
        runtime=runtime_minutes("twin"),
    params:
        shape_of=shape_of,
        tokenizer_dir=lambda wildcards, input: str(Path(input.tokenizer[0]).parent),
        seed=0,
    shell:
        "python -m llm2tflite.inputs.twin --shape-of {params.shape_of} --tokenizer-dir {params.tokenizer_dir}"
        " --seed {params.seed} --out-preset {output.preset} > {log} 2>&1"


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


rule keras_fidelity_reference:
    input:
        preset=preset_inputs,
        text=heldout_text,
        code=stage_code("evaluate.fidelity"),
    output:
        json="results/{model}/reference/fidelity.json",
        # fp16 logits of the first held-out lines, at most fidelity.logits_mb (written beside the
        # JSON by the same command)
        logits="results/{model}/reference/fidelity.logits.npy",
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
        logits_mb=FIDELITY["logits_mb"],
    shell:
        "python -m llm2tflite.evaluate.fidelity keras --preset {params.preset:q}"
        " --max-length {params.max_length} --sampler {params.sampler}"
        " --prompts-json {params.prompts:q} --text {input.text} --lines {params.lines}"
        " --logits-mb {params.logits_mb} --out {output.json} > {log} 2>&1"
