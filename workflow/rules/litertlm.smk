# LiteRT-LM bundles of the LiteRT route's files: results/{model}/litert/{variant}.litertlm
# (+ .litertlm.json: metadata, sha256, LiteRT-LM's greedy continuation of the check prompt),
# packed in an environment of their own (requirements-litert-lm.txt: litert-lm needs
# protobuf >= 6.31, TensorFlow 2.18.1 < 6): a venv the litertlm_env rule creates (a local rule:
# it needs PyPI), or envs/litert-lm.yaml under --sdm conda. Settings and helpers:
# workflow/rules/litert_helpers.smk.


localrules:
    litertlm_env,


rule litertlm_env:
    input:
        requirements=project_path(WORKFLOW_DIR / LITERT_LM_REQUIREMENTS),
        code=stage_code("litertlm.env"),
    output:
        f"{LITERT_LM_VENV}/{LITERT_LM_VENV_MARKER}",
    log:
        "logs/litertlm_env.log",
    conda:
        "../../envs/litert-lm.yaml"
    params:
        venv=lambda wildcards, output: str(Path(output[0]).parent),
    shell:
        "python -m llm2tflite.litertlm.env --requirements {input.requirements:q}"
        " --dir {params.venv:q} > {log} 2>&1"


rule litertlm_bundle:
    input:
        tflite="results/{model}/litert/{variant}.tflite",
        info="results/{model}/litert/litert_export.json",
        tokenizer=lambda wildcards: litert_tokenizer_file(wildcards.model),
        env=litert_lm_env_inputs,
        code=stage_code("litertlm.bundle"),
    output:
        bundle="results/{model}/litert/{variant}.litertlm",
        record="results/{model}/litert/{variant}.litertlm.json",
    log:
        "logs/{model}/litertlm_{variant}.log",
    wildcard_constraints:
        variant="|".join(LITERT_VARIANTS) or "(?!)",
    conda:
        "../../envs/litert-lm.yaml"
    threads: 2
    resources:
        mem_mb=mem_mb("tflite"),
        runtime=runtime_minutes("bench"),
        cpus_per_task=2,
    params:
        python=litert_lm_python(),
        root=lambda wildcards: REPOSITORY_ROOT,
        sampler=as_json(LITERTLM["sampler"]),
        activation_type=LITERTLM["activation_type"],
        check_prompt=BENCHMARK["prompt"],
    shell:
        "PYTHONPATH={params.root:q} {params.python} -m llm2tflite.litertlm.bundle build"
        " --model {input.tflite} --info {input.info} --tokenizer {input.tokenizer}"
        " --out {output.bundle} --record {output.record} --sampler-json {params.sampler:q}"
        " --activation-type {params.activation_type} --check-prompt {params.check_prompt:q}"
        " > {log} 2>&1"
