"""Hand a converted model to an Android app: a codelab-route ``.tflite`` or a LiteRT-LM bundle.

Config ``android: route:`` chooses what goes to the app's assets:

- ``tflite`` (the codelab's step 4, below): the Flex model and the TFLite Interpreter notes;
- ``litert``: the LiteRT route's ``.litertlm`` bundle (model + tokenizer + metadata) for
  LiteRT-LM's Kotlin API, builtin ops only (no Flex, no custom ops, no TF Text). The JSON then
  describes the bundle (its LlmMetadata, what checked it), the ``.tflite`` inside it (its
  signatures), the prompt to try with the text LiteRT-LM printed for it when the bundle was
  built (``expected_output``) and whether our Python runtime printed the same
  (``runtimes_agree``), and LiteRT-LM Kotlin usage notes (``build_litert_handoff``).

Codelab route: copies the ``.tflite`` file to the app's assets (atomically, as
``autocomplete.tflite``) and writes next to it a JSON that describes what the app needs to know:

- ``signatures``: every signature's inputs and outputs (tensor name, dtype, shape and shape
  signature), read from the ``.tflite`` file itself through the interpreter, plus the shapes the
  traced model declares (outputs are dynamic: the interpreter reports their shape after a call);
- ``generation``: ``max_length`` and ``prompt_token_limit`` (and the rest of the export info);
- ``try_prompt`` and ``expected_output``: a prompt to try on the device and what the TFLite
  interpreter returns for it here (greedy decoding: the app should print the same text);
- ``flex_delegate``: the TF ops the Flex delegate must include (the selective-build list, from
  the op audit), which of them are not core TensorFlow ops, and ``custom_ops`` to register;
- ``model``: asset name, size and sha256 (the audit must describe this very file: the sha256 the
  audit recorded is checked);
- ``android``: dependencies and a short note on how the app loads and calls the model.

CLI::

    python -m llm2tflite.report.android --model results/<model>/tflite/int8.tflite
        --ops results/<model>/tflite/ops/int8.json
        --export-info results/<model>/traced/llm2tflite_export.json
        --model-name tiny --variant int8 [--prompt "Estoy disfrutando de"]
        --out-model results/reports/default/android/app/src/main/assets/autocomplete.tflite
        --out-json results/reports/default/android/app/src/main/assets/autocomplete.json

    python -m llm2tflite.report.android --route litert --model results/<model>/litert/int8.litertlm
        --bundle-record results/<model>/litert/int8.litertlm.json
        --tflite results/<model>/litert/int8.tflite
        --export-info results/<model>/litert/litert_export.json [--ops <its op audit JSON>]
        --model-name tiny --variant int8 [--prompt "Estoy disfrutando de"]
        --out-model results/reports/default/android/app/src/main/assets/autocomplete.litertlm
        --out-json results/reports/default/android/app/src/main/assets/autocomplete.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from llm2tflite import CODELAB_PROMPT as DEFAULT_PROMPT
from llm2tflite.core import atomic
from llm2tflite.core.hashing import sha256_file

FLEX_AAR = "org.tensorflow:tensorflow-lite-select-tf-ops"
LITERTLM_AAR = "com.google.ai.edge.litertlm:litertlm-android"
ROUTES = ("tflite", "litert")


def _dtype_name(dtype) -> str:
    import numpy as np

    if dtype in (np.bytes_, np.object_, np.str_):
        return "string"
    return np.dtype(dtype).name


def _tensor(name: str, details: dict, declared: str | None) -> dict:
    return {
        "name": name,
        "tensor_name": details.get("name"),
        "dtype": _dtype_name(details["dtype"]),
        "shape": [int(d) for d in details["shape"]],
        "shape_signature": [int(d) for d in details["shape_signature"]],
        "declared": declared,
    }


def inspect_signatures(interpreter, declared: dict | None = None) -> dict:
    """Every signature's inputs and outputs as the interpreter reports them."""
    declared = declared or {}
    signatures = {}
    for key, names in interpreter.get_signature_list().items():
        runner = interpreter.get_signature_runner(key)
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
        decl = declared.get(key, {})
        signatures[key] = {
            "inputs": [
                _tensor(n, inputs[n], decl.get("inputs", {}).get(n)) for n in names["inputs"]
            ],
            "outputs": [
                _tensor(n, outputs[n], decl.get("outputs", {}).get(n)) for n in names["outputs"]
            ],
        }
    return signatures


def _generate(interpreter, prompt: str) -> str:
    import numpy as np

    from llm2tflite.codelab.trace import GENERATE_SIGNATURE

    runner = interpreter.get_signature_runner(GENERATE_SIGNATURE)
    # A batch of one, never a scalar (see llm2tflite.codelab.trace).
    output = runner(prompt=np.array([prompt.encode("utf-8")], dtype=object))["generated_text"]
    return output[0].decode("utf-8", errors="replace")


def android_notes(asset: str, flex_ops, outside_core, custom_ops, prompt_limit) -> dict:
    dependencies = ["org.tensorflow:tensorflow-lite"]
    notes = [
        f"Put {asset} in app/src/main/assets/ and keep it uncompressed "
        '(androidResources { noCompress += "tflite" }); the app memory-maps it '
        "(context.assets.openFd(...) -> FileChannel.map(READ_ONLY, startOffset, declaredLength)) "
        "and creates org.tensorflow.lite.Interpreter(buffer).",
        "Call the signature with a batch of one string: "
        'interpreter.runSignature(mapOf("prompt" to arrayOf(text)), '
        'mapOf("generated_text" to outputBuffer), "serving_default"). '
        "The codelab's interpreter.run(text, outputBuffer) passes a bare String, which resizes the "
        "input to a scalar; this model's input is string[1] and a scalar string can corrupt the "
        "tokenizer's input.",
        "The output is the prompt followed by its continuation (UTF-8 bytes); the new text is what "
        "follows the prompt. Size the output buffer for max_length tokens (the codelab's 800 "
        "bytes can be too small for long continuations).",
        f"Prompts longer than {prompt_limit} tokens (start token included) keep their first "
        "tokens; the app may rather keep the last words of the text, as the codelab's "
        "trimToMaxWordCount does."
        if prompt_limit
        else "Long prompts are truncated to their first tokens by the model.",
    ]
    if flex_ops:
        dependencies.append(f"{FLEX_AAR} (or a selective build with flex_delegate.tf_ops)")
        notes.append(
            f"The model runs {len(flex_ops)} TensorFlow ops in the Flex delegate: link "
            f"{FLEX_AAR}, or build a smaller one with only these ops (TensorFlow's "
            "tensorflow/lite/tools/build_aar.sh --input_models=" + asset + " --target_archs=...)."
        )
    if outside_core:
        notes.append(
            "Not core TensorFlow ops, so not in the prebuilt Flex AAR: "
            + ", ".join(outside_core)
            + ". Build the Flex delegate with their kernels linked in "
            "(the codelab's app/libs/build_aar/build_aar.sh builds TF Text into "
            "tftext_tflite_flex.aar)."
        )
    if custom_ops:
        notes.append(
            "Register these custom ops with the interpreter (e.g. TF Text's TFLite "
            "kernels): " + ", ".join(custom_ops) + "."
        )
    else:
        notes.append("No custom (non-Flex) ops: no op resolver registration is needed.")
    return {"dependencies": dependencies, "notes": notes}


def _asset_name(out_model: Path) -> str:
    parts = out_model.resolve().parts
    # The path inside the Android project when the usual layout (app/src/main/assets) is used.
    for i in range(len(parts) - 3, -1, -1):
        if parts[i : i + 3] == ("app", "src", "main"):
            return "/".join(parts[i:])
    return out_model.name


def build_handoff(
    model_path,
    ops: dict,
    export_info: dict,
    model_name: str,
    variant: str,
    out_model,
    prompt: str = DEFAULT_PROMPT,
) -> dict:
    from llm2tflite.codelab.runtime import load_interpreter

    model_path, out_model = Path(model_path), Path(out_model)
    sha256 = sha256_file(model_path)
    if ops.get("sha256") and ops["sha256"] != sha256:
        raise ValueError(
            f"the op audit was made on another file (sha256 {ops['sha256']}) "
            f"than {model_path} (sha256 {sha256}); rerun the audit"
        )
    interpreter = load_interpreter(str(model_path))
    signatures = inspect_signatures(interpreter, export_info.get("signatures"))
    expected_output = _generate(interpreter, prompt)
    flex_ops = list(ops.get("flex_ops") or [])
    outside_core = list(ops.get("flex_ops_outside_core_tf") or [])
    custom_ops = list(ops.get("custom_ops") or [])
    derived = (ops.get("user_op_checks") or {}).get("conversion_report")
    generation = {k: v for k, v in export_info.items() if k != "signatures"}
    return {
        "model_name": model_name,
        "variant": variant,
        "route": "tflite",
        "model": {
            "asset": out_model.name,
            "path_in_project": _asset_name(out_model),
            "source": str(model_path),
            "size_bytes": model_path.stat().st_size,
            "sha256": sha256,
        },
        "default_signature": "serving_default",
        "signatures": signatures,
        "generation": generation,
        "max_length": export_info.get("max_length"),
        "prompt_token_limit": export_info.get("prompt_token_limit"),
        "try_prompt": prompt,
        "expected_output": expected_output,
        "flex_delegate": {
            "needed": bool(flex_ops),
            "tf_ops": flex_ops,
            "tf_ops_outside_core_tf": outside_core,
            "op_libraries": ops.get("flex_op_libraries") or {},
            "user_selected_tf_ops": None if derived is None else derived.get("listed"),
        },
        "custom_ops": custom_ops,
        "android": android_notes(
            out_model.name,
            flex_ops,
            outside_core,
            custom_ops,
            export_info.get("prompt_token_limit"),
        ),
    }


# ---- LiteRT route: a LiteRT-LM bundle ---------------------------------------------------------


def litert_android_notes(
    asset: str,
    metadata: dict,
    activation_type: str,
    versions: dict,
    tokenizer_kind: str | None = None,
) -> dict:
    """Dependencies and LiteRT-LM Kotlin usage notes for a bundle with this metadata."""
    sampler = metadata.get("sampler_params", {})
    greedy = sampler.get("k") == 1
    checked = versions.get("litert-lm", "?")
    handoff = {
        "dependencies": [
            f"{LITERTLM_AAR} (the bundle was packed and checked with LiteRT-LM {checked}; pin "
            "the litertlm-android release of that version or later)"
        ],
        "notes": [
            f"Builtin TFLite ops only: no Flex delegate, no select-tf-ops AAR, no TF Text or "
            f"other custom ops. The tokenizer and the generation loop are LiteRT-LM's (in "
            f"{asset}): the app passes text and receives text.",
            f"{asset} is large: download it to app storage (or push it with adb for testing) "
            "rather than packing it in the APK's assets, then give LiteRT-LM its file path: "
            "EngineConfig(modelPath = file.path, backend = Backend.CPU(threadCount = 2), "
            f"maxNumTokens = {metadata.get('max_num_tokens')}, cacheDir = context.cacheDir.path"
            f", activationDataType = ActivationDataType.FLOAT32); "
            "Engine(engineConfig).also { it.initialize() } on a background thread (loading "
            "takes a while).",
            "Continue text without a chat template: engine.createSession(SessionConfig(...)) "
            "and session.generateContentStream(listOf(InputData.Text(prompt)), callback) (or "
            "runPrefill + runDecode); the bundle's model type is generic (no prompt template), "
            "so engine.createConversation().sendMessageAsync(prompt) continues the same text. "
            "LiteRT-LM puts the start token first and stops at the stop token or after "
            f"max_num_tokens = {metadata.get('max_num_tokens')} tokens in all (start token, "
            "prompt and generated); it returns the continuation only (not the prompt).",
            "Sampling: the bundle's default sampler is "
            + ("greedy (TOP_P with k = 1)" if greedy else f"TOP_P {sampler}")
            + "; override it per session with SamplerConfig(topK, topP, temperature, seed). "
            "LiteRT-LM's CPU sampler implements only TOP_P: topK = 1 is greedy.",
            f"Activations: the bundle asks for {activation_type} "
            "(prefer_activation_type); set ActivationDataType.FLOAT32 in EngineConfig too: the "
            "loader's default for a text decoder is fp16, which changes the output where the "
            "CPU computes in fp16.",
            "cacheDir: LiteRT-LM writes an XNNPACK weight cache (<bundle>_<mtime>_<size>."
            "xnnpack_cache) next to the model unless cacheDir points elsewhere; it makes later "
            "loads faster.",
            'Prompts longer than the context fail in LiteRT-LM ("Input token ids are too '
            'long"): keep prompts well under max_num_tokens (trim old words first, as the '
            "codelab's trimToMaxWordCount does).",
        ],
    }
    if tokenizer_kind == "sentencepiece":
        handoff["notes"].append(
            "SentencePiece tokenizer: LiteRT-LM decodes the continuation on its own, and "
            "SentencePiece drops the space its first piece starts with (the word boundary "
            "after the prompt): prompt + continuation can read 'Estoy disfrutando delong' "
            "where the model means 'Estoy disfrutando de long'. Show the continuation apart "
            "from the prompt, or add the space yourself when the prompt does not end in one "
            "and the continuation starts a word."
        )
    return handoff


def custom_op_names(tflite) -> list[str]:
    """Custom (and Flex) op names in a .tflite's operator table, read from the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    data = Path(tflite).read_bytes()
    get_root = getattr(schema.Model, "GetRootAs", None) or schema.Model.GetRootAsModel
    model = get_root(data, 0)
    names = set()
    for i in range(model.OperatorCodesLength()):
        custom = model.OperatorCodes(i).CustomCode()
        if custom:
            names.add(custom.decode("utf-8") if isinstance(custom, bytes) else str(custom))
    return sorted(names)


def _litert_runtime_output(tflite, prompt: str, max_length: int) -> tuple[str, str]:
    """Our Python runtime's greedy text for the prompt on the same .tflite, as long as
    LiteRT-LM's (``max_num_tokens`` tokens at most), and its generated ids decoded on their own
    (as LiteRT-LM decodes its continuation)."""
    from llm2tflite.litert.runtime import LiteRTModel

    model = LiteRTModel(tflite)
    generation = model.generate(prompt, max_length=max_length)
    return generation.text, model.text(generation.token_ids[generation.prompt_tokens :])


def build_litert_handoff(
    bundle,
    record: dict,
    tflite,
    export_info: dict,
    model_name: str,
    variant: str,
    out_model,
    ops: dict | None = None,
    prompt: str = DEFAULT_PROMPT,
) -> dict:
    """The hand-off JSON of a LiteRT-LM bundle (see the module docstring)."""
    from ai_edge_litert.interpreter import Interpreter

    bundle, tflite, out_model = Path(bundle), Path(tflite), Path(out_model)
    sha256 = sha256_file(bundle)
    if record.get("sha256") != sha256:
        raise ValueError(
            f"the bundle record describes another file (sha256 "
            f"{record.get('sha256')}) than {bundle} (sha256 {sha256}); rebuild it"
        )
    tflite_sha256 = sha256_file(tflite)
    if record.get("model", {}).get("sha256") != tflite_sha256:
        raise ValueError(f"{bundle} was packed from another .tflite than {tflite}; rebuild it")
    leftover = custom_op_names(tflite)
    if ops is not None:
        if ops.get("sha256") and ops["sha256"] != tflite_sha256:
            raise ValueError(f"the op audit was made on another file than {tflite}")
        leftover += list(ops.get("flex_ops") or []) + list(ops.get("custom_ops") or [])
    if leftover:
        raise ValueError(
            f"{tflite} is not builtins-only ({', '.join(sorted(set(leftover)))}): "
            "LiteRT-LM cannot run it"
        )
    check = record.get("check") or {}
    if check.get("prompt") != prompt or "continuation" not in check:
        raise ValueError(
            f"the bundle was checked with prompt {check.get('prompt')!r}, not "
            f"{prompt!r}: build it with --check-prompt {prompt!r}"
        )
    expected_output = prompt + check["continuation"]
    metadata = record["llm_metadata"]
    ours, our_continuation = _litert_runtime_output(tflite, prompt, int(metadata["max_num_tokens"]))
    signatures = inspect_signatures(
        Interpreter(model_path=str(tflite)), _declared_litert_signatures(export_info)
    )
    generation = {k: v for k, v in export_info.items() if k not in ("signatures",)}
    return {
        "model_name": model_name,
        "variant": variant,
        "route": "litert",
        "model": {
            "asset": out_model.name,
            "path_in_project": _asset_name(out_model),
            "source": str(bundle),
            "size_bytes": bundle.stat().st_size,
            "sha256": sha256,
            "tflite": {
                "source": str(tflite),
                "sha256": tflite_sha256,
                "size_bytes": tflite.stat().st_size,
            },
        },
        "litertlm": {
            "llm_metadata": metadata,
            "activation_type": record.get("activation_type"),
            "tokenizer": record.get("tokenizer", {}).get("section"),
            "checked_with": record.get("versions"),
        },
        "signatures": signatures,
        "generation": generation,
        "max_num_tokens": metadata.get("max_num_tokens"),
        "try_prompt": prompt,
        "expected_output": expected_output,
        "expected_output_source": "LiteRT-LM (Python Engine, greedy) on this very bundle",
        "python_runtime_output": ours,
        # LiteRT-LM decodes the generated ids on their own: compare like with like (with a
        # SentencePiece tokenizer that drops the space a continuation starts with, so
        # expected_output can lack the space after the prompt that python_runtime_output has).
        "python_runtime_continuation": our_continuation,
        "runtimes_agree": our_continuation == check["continuation"],
        "flex_delegate": {"needed": False, "tf_ops": [], "tf_ops_outside_core_tf": []},
        "custom_ops": [],
        "android": litert_android_notes(
            out_model.name,
            metadata,
            record.get("activation_type"),
            record.get("versions") or {},
            export_info.get("tokenizer_kind"),
        ),
    }


def _declared_litert_signatures(export_info: dict) -> dict:
    """The export info's signature specs in ``inspect_signatures``' declared form."""
    declared = {}
    for key, spec in (export_info.get("signatures") or {}).items():
        declared[key] = {
            side: {name: f"{dtype}{shape}" for name, (dtype, shape) in spec.get(side, {}).items()}
            for side in ("inputs", "outputs")
        }
    return declared


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--route",
        choices=ROUTES,
        default="tflite",
        help="tflite: the codelab route's .tflite; litert: a LiteRT-LM bundle",
    )
    parser.add_argument(
        "--model",
        required=True,
        help=".tflite (codelab route) or .litertlm (LiteRT route) to hand off",
    )
    parser.add_argument(
        "--ops",
        help="its op audit JSON (llm2tflite.evaluate.audit); codelab route: "
        "required; LiteRT route: the audit of the .tflite inside",
    )
    parser.add_argument(
        "--export-info",
        required=True,
        help="llm2tflite_export.json of the traced SavedModel (codelab route) or "
        "litert_export.json (LiteRT route)",
    )
    parser.add_argument("--bundle-record", help="LiteRT route: the bundle's .litertlm.json")
    parser.add_argument("--tflite", help="LiteRT route: the .tflite packed in the bundle")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="the prompt to try on device")
    parser.add_argument(
        "--out-model", required=True, help="e.g. .../assets/autocomplete.tflite (or .litertlm)"
    )
    parser.add_argument("--out-json", required=True, help="e.g. .../assets/autocomplete.json")
    args = parser.parse_args(argv)
    ops = json.loads(Path(args.ops).read_text(encoding="utf-8")) if args.ops else None
    export_info = json.loads(Path(args.export_info).read_text(encoding="utf-8"))
    if args.route == "litert":
        if not (args.bundle_record and args.tflite):
            parser.error("--route litert needs --bundle-record and --tflite")
        record = json.loads(Path(args.bundle_record).read_text(encoding="utf-8"))
        handoff = build_litert_handoff(
            args.model,
            record,
            args.tflite,
            export_info,
            args.model_name,
            args.variant,
            args.out_model,
            ops,
            args.prompt,
        )
    else:
        if ops is None:
            parser.error("--ops is required for the codelab route")
        handoff = build_handoff(
            args.model, ops, export_info, args.model_name, args.variant, args.out_model, args.prompt
        )
    with atomic.atomic_path(args.out_model) as tmp:
        shutil.copyfile(args.model, tmp)
        if sha256_file(tmp) != handoff["model"]["sha256"]:
            raise OSError(f"copy of {args.model} does not match its sha256")
    atomic.write_json(args.out_json, handoff)
    size_mb = handoff["model"]["size_bytes"] / 1e6
    print(
        f"handed {args.model_name}/{args.variant} ({args.route} route) to {args.out_model} "
        f"({size_mb:.1f} MB, {len(handoff['flex_delegate']['tf_ops'])} Flex ops, "
        f"{len(handoff['custom_ops'])} custom ops): "
        f"{handoff['try_prompt']!r} -> {handoff['expected_output']!r}"
    )
    if handoff.get("runtimes_agree") is False:
        print(
            f"warning: our Python runtime printed {handoff['python_runtime_output']!r}, "
            "LiteRT-LM the text above",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
