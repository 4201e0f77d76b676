"""Hand a converted model to the codelab's Android app (its step 4).

Copies the ``.tflite`` file to the app's assets (atomically, as ``autocomplete.tflite``) and
writes next to it a JSON that describes what the app needs to know:

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

    python -m llm2tflite.android --model results/<model>/tflite/int8.tflite
        --ops results/<model>/ops/int8.json
        --export-info results/<model>/traced/llm2tflite_export.json
        --model-name tiny --variant int8 [--prompt "Estoy disfrutando de"]
        --out-model results/android/app/src/main/assets/autocomplete.tflite
        --out-json results/android/app/src/main/assets/autocomplete.json
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from llm2tflite import CODELAB_PROMPT as DEFAULT_PROMPT
from llm2tflite import atomic
from llm2tflite.manifest import sha256_file

FLEX_AAR = "org.tensorflow:tensorflow-lite-select-tf-ops"


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
            "inputs": [_tensor(n, inputs[n], decl.get("inputs", {}).get(n))
                       for n in names["inputs"]],
            "outputs": [_tensor(n, outputs[n], decl.get("outputs", {}).get(n))
                        for n in names["outputs"]],
        }
    return signatures


def _generate(interpreter, prompt: str) -> str:
    import numpy as np

    from llm2tflite.trace import GENERATE_SIGNATURE

    runner = interpreter.get_signature_runner(GENERATE_SIGNATURE)
    # A batch of one, never a scalar (see llm2tflite.trace).
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
        "trimToMaxWordCount does." if prompt_limit else
        "Long prompts are truncated to their first tokens by the model.",
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
            + ", ".join(outside_core) + ". Build the Flex delegate with their kernels linked in "
            "(the codelab's app/libs/build_aar/build_aar.sh builds TF Text into "
            "tftext_tflite_flex.aar)."
        )
    if custom_ops:
        notes.append("Register these custom ops with the interpreter (e.g. TF Text's TFLite "
                     "kernels): " + ", ".join(custom_ops) + ".")
    else:
        notes.append("No custom (non-Flex) ops: no op resolver registration is needed.")
    return {"dependencies": dependencies, "notes": notes}


def _asset_name(out_model: Path) -> str:
    parts = out_model.resolve().parts
    # The path inside the Android project when the usual layout (app/src/main/assets) is used.
    for i in range(len(parts) - 3, -1, -1):
        if parts[i:i + 3] == ("app", "src", "main"):
            return "/".join(parts[i:])
    return out_model.name


def build_handoff(model_path, ops: dict, export_info: dict, model_name: str, variant: str,
                  out_model, prompt: str = DEFAULT_PROMPT) -> dict:
    from llm2tflite.runtime import load_interpreter

    model_path, out_model = Path(model_path), Path(out_model)
    sha256 = sha256_file(model_path)
    if ops.get("sha256") and ops["sha256"] != sha256:
        raise ValueError(f"the op audit was made on another file (sha256 {ops['sha256']}) "
                         f"than {model_path} (sha256 {sha256}); rerun the audit")
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
        "android": android_notes(out_model.name, flex_ops, outside_core, custom_ops,
                                 export_info.get("prompt_token_limit")),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help=".tflite file to hand off")
    parser.add_argument("--ops", required=True, help="its op audit JSON (llm2tflite.audit)")
    parser.add_argument("--export-info", required=True,
                        help="llm2tflite_export.json of the traced SavedModel")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="the prompt to try on device")
    parser.add_argument("--out-model", required=True, help="e.g. .../assets/autocomplete.tflite")
    parser.add_argument("--out-json", required=True, help="e.g. .../assets/autocomplete.json")
    args = parser.parse_args(argv)
    ops = json.loads(Path(args.ops).read_text(encoding="utf-8"))
    export_info = json.loads(Path(args.export_info).read_text(encoding="utf-8"))
    handoff = build_handoff(args.model, ops, export_info, args.model_name, args.variant,
                            args.out_model, args.prompt)
    with atomic.atomic_path(args.out_model) as tmp:
        shutil.copyfile(args.model, tmp)
        if sha256_file(tmp) != handoff["model"]["sha256"]:
            raise OSError(f"copy of {args.model} does not match its sha256")
    atomic.write_json(args.out_json, handoff)
    size_mb = handoff["model"]["size_bytes"] / 1e6
    print(f"handed {args.model_name}/{args.variant} to {args.out_model} ({size_mb:.1f} MB, "
          f"{len(handoff['flex_delegate']['tf_ops'])} Flex ops, "
          f"{len(handoff['custom_ops'])} custom ops): "
          f"{handoff['try_prompt']!r} -> {handoff['expected_output']!r}")


if __name__ == "__main__":
    main()
