# Model sources that the workflow builds itself, each ending as a KerasHub preset directory:
#   train:    corpus -> vocabulary of the family's tokenizer kind (byte-level BPE, SentencePiece)
#             -> small model of the family trained with Keras (the offline default models);
#   shape_of: a preset's architecture with seeded random weights and a tokenizer of the family's
#             kind: fetched (GPT-2's real files) or learned on the corpus (SentencePiece families),
#             as the family module says (Architecture.twin_tokenizer).


rule corpus:
    wildcard_constraints:
        model=models_learning_tokenizer(),
    output:
        train="results/{model}/corpus/train.txt",
        heldout="results/{model}/corpus/heldout.txt",
    input:
        code=stage_code("corpus"),
    params:
        corpus=corpus_setting,
    log:
        "logs/{model}/corpus.log",
    benchmark:
        "results/benchmarks/{model}/corpus.tsv"
    conda:
        ENV_FILE
    shell:
        "python -m llm2tflite.corpus --seed {params.corpus[seed]}"
        " --train-lines {params.corpus[train_lines]} --heldout-lines {params.corpus[heldout_lines]}"
        " --out-train {output.train} --out-heldout {output.heldout} > {log} 2>&1"


rule vocabulary:
    wildcard_constraints:
        model=models_with_tokenizer("byte_level_bpe"),
    output:
        vocab="results/{model}/vocab/vocab.json",
        merges="results/{model}/vocab/merges.txt",
    input:
        corpus="results/{model}/corpus/train.txt",
        code=stage_code("vocab"),
    params:
        vocabulary=train_setting("vocabulary"),
        out_dir=subpath(output.vocab, parent=True),
    log:
        "logs/{model}/vocabulary.log",
    benchmark:
        "results/benchmarks/{model}/vocabulary.tsv"
    conda:
        ENV_FILE
    shell:
        "python -m llm2tflite.vocab --corpus {input.corpus}"
        " --vocab-size {params.vocabulary[size]} --out-dir {params.out_dir} > {log} 2>&1"


rule vocabulary_sentencepiece:
    wildcard_constraints:
        model=models_with_tokenizer("sentencepiece"),
    output:
        model="results/{model}/vocab/tokenizer.model",
    input:
        corpus="results/{model}/corpus/train.txt",
        code=stage_code("vocab"),
    params:
        size=vocab_size_option,
        architecture=architecture_name,
        out_dir=subpath(output.model, parent=True),
    log:
        "logs/{model}/vocabulary.log",
    benchmark:
        "results/benchmarks/{model}/vocabulary.tsv"
    conda:
        ENV_FILE
    shell:
        "python -m llm2tflite.vocab --architecture {params.architecture} --corpus {input.corpus}"
        " {params.size} --out-dir {params.out_dir} > {log} 2>&1"


rule train:
    wildcard_constraints:
        model=models_matching("train"),
    output:
        preset=directory("results/{model}/preset"),
        metrics="results/{model}/train_metrics.json",
    input:
        train="results/{model}/corpus/train.txt",
        heldout="results/{model}/corpus/heldout.txt",
        tokenizer=lambda wildcards: tokenizer_files(wildcards.model),
        code=stage_code("train"),
    params:
        architecture=lambda wildcards: architectures.for_model_source(
            model_source(wildcards.model)
        ).name,
        model=lambda wildcards: as_json(train_setting("model")(wildcards)),
        fit=lambda wildcards: as_json(train_setting("fit")(wildcards)),
        vocab_dir=lambda wildcards: f"results/{wildcards.model}/vocab",
    threads: 2
    resources:
        mem_mb=mem_mb("train"),
        runtime=runtime_minutes("train"),
        cpus_per_task=2,
    log:
        "logs/{model}/train.log",
    benchmark:
        "results/benchmarks/{model}/train.tsv"
    conda:
        ENV_FILE
    shell:
        "python -m llm2tflite.train --corpus {input.train} --heldout {input.heldout}"
        " --vocab-dir {params.vocab_dir} --architecture {params.architecture}"
        " --model-json {params.model:q} --fit-json {params.fit:q}"
        " --out-preset {output.preset} --out-metrics {output.metrics} > {log} 2>&1"


rule gpt2_tokenizer:
    wildcard_constraints:
        model=twins_with_tokenizer("published"),
    output:
        vocab="results/{model}/gpt2_tokenizer/vocab.json",
        merges="results/{model}/gpt2_tokenizer/merges.txt",
    input:
        code=stage_code("gpt2_assets"),
    params:
        out_dir=subpath(output.vocab, parent=True),
    log:
        "logs/{model}/gpt2_tokenizer.log",
    conda:
        ENV_FILE
    shell:
        "python -m llm2tflite.gpt2_assets --out-dir {params.out_dir} > {log} 2>&1"


rule twin:
    wildcard_constraints:
        model=models_matching("shape_of"),
    output:
        preset=directory("results/{model}/preset"),
    input:
        tokenizer=twin_tokenizer_files,
        code=stage_code("twin"),
    params:
        shape_of=shape_of,
        tokenizer_dir=lambda wildcards, input: str(Path(input.tokenizer[0]).parent),
        seed=0,
    threads: 2
    resources:
        mem_mb=mem_mb("keras"),
        runtime=runtime_minutes("twin"),
    log:
        "logs/{model}/twin.log",
    benchmark:
        "results/benchmarks/{model}/twin.tsv"
    conda:
        ENV_FILE
    shell:
        "python -m llm2tflite.twin --shape-of {params.shape_of} --tokenizer-dir {params.tokenizer_dir}"
        " --seed {params.seed} --out-preset {output.preset} > {log} 2>&1"
