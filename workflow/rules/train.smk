# The offline default model source (`train:`): corpus -> BPE vocabulary -> small GPT-2 preset.


rule corpus:
    output:
        train="results/{model}/corpus/train.txt",
        heldout="results/{model}/corpus/heldout.txt",
    input:
        code=stage_code("corpus"),
    params:
        corpus=train_setting("corpus"),
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


rule train:
    output:
        preset=directory("results/{model}/preset"),
        metrics="results/{model}/train_metrics.json",
    input:
        train="results/{model}/corpus/train.txt",
        heldout="results/{model}/corpus/heldout.txt",
        vocab="results/{model}/vocab/vocab.json",
        merges="results/{model}/vocab/merges.txt",
        code=stage_code("train"),
    params:
        hyperparameters=lambda wildcards: as_json(
            {**train_setting("model")(wildcards), **train_setting("fit")(wildcards)}
        ),
        vocab_dir=subpath(input.vocab, parent=True),
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
        " --vocab-dir {params.vocab_dir} --hyperparameters-json {params.hyperparameters:q}"
        " --out-preset {output.preset} --out-metrics {output.metrics} > {log} 2>&1"
