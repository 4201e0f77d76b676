"""The codelab route's runtime: the generation loop and the tokenizer inside one signature call.

:class:`TFLiteModel` runs a codelab ``.tflite`` in ``InterpreterWithCustomOps`` with the TF Text
kernels (as in the codelab); Select TF ops run in the Flex delegate that the TF 2.18.1 wheel still
exports. :class:`SavedModelRuntime` runs the traced SavedModel (``llm2tflite.codelab.trace``) in
TensorFlow: the same graph, the benchmark's baseline. Open either through
``llm2tflite.model_files.open_model``, which tells the routes apart.
"""

from __future__ import annotations

import time
import warnings

import llm2tflite  # noqa: F401
from llm2tflite.core import flatbuffer
from llm2tflite.core.generation import Generation, ModelOpenError

TFLITE_ROUTE = "tflite"
TENSORFLOW_ROUTE = "tensorflow"
# The codelab route's sampler is traced into the graph; the schema allows only greedy.
TRACED_SAMPLERS = (None, "greedy")


def load_interpreter(model_path: str, num_threads: int | None = None):
    import tensorflow_text as tf_text
    from tensorflow.lite.python import interpreter as tflite_interpreter

    with warnings.catch_warnings():
        # The TF 2.18 interpreter warns that it moves to ai_edge_litert; that package's wheels
        # lack the Flex delegate this model needs, so the warning is noise here.
        warnings.simplefilter("ignore", UserWarning)
        return tflite_interpreter.InterpreterWithCustomOps(
            model_path=str(model_path),
            custom_op_registerers=tf_text.tflite_registrar.SELECT_TFTEXT_OPS,
            num_threads=num_threads,
        )


def _as_prompt_batch(prompt: str | bytes):
    import numpy as np

    # A batch of one, never a scalar (see llm2tflite.codelab.trace).
    return np.array([prompt.encode("utf-8") if isinstance(prompt, str) else prompt], dtype=object)


def _decode(text: bytes) -> str:
    # Byte-level BPE can stop in the middle of a multi-byte character.
    return text.decode("utf-8", errors="replace")


def check_traced_sampler(sampler) -> None:
    if sampler not in TRACED_SAMPLERS:
        raise ValueError(
            f"sampler {sampler!r}: this model's sampler is fixed when it is traced "
            "(greedy); sample with a LiteRT-route model instead"
        )


class _TracedGraphModel:
    """What the codelab .tflite and the traced SavedModel share: the same four signatures."""

    route: str
    load_seconds: float

    def _run(self, name: str, **inputs) -> dict:
        raise NotImplementedError

    def generate(
        self,
        prompt: str | bytes,
        max_length: int | None = None,
        sampler=None,
        on_text=None,
        timings: bool = False,
    ) -> Generation:
        """One generation; the loop runs inside one signature call, so ``timings`` stays None."""
        check_traced_sampler(sampler)
        if max_length is not None and max_length < 1:
            raise ValueError("max_length must be at least 1 (the start token)")
        outputs = self._run("serving_default", prompt=_as_prompt_batch(prompt))
        generation = Generation(
            text=_decode(outputs["generated_text"][0]),
            token_ids=[int(i) for i in outputs["token_ids"][0]],
            prompt_tokens=int(outputs["prompt_tokens"][0]),
        )
        if max_length is not None and len(generation.token_ids) > max_length:
            # Greedy generation is causal: the first max_length ids are what a model traced with
            # max_length would have produced. The start token (first, if any) is not text.
            kept = generation.token_ids[:max_length]
            generation = Generation(
                self.text(kept[self._start_tokens() :]),
                kept,
                min(generation.prompt_tokens, max_length),
            )
        if on_text is not None:
            on_text(generation.text)
        return generation

    def token_ids(self, text: str | bytes, with_start: bool = False) -> list[int]:
        """The text's token ids; the start token the signature puts first only if asked (and
        if the model has one: ``start_tokens`` 0 marks the first id a placeholder)."""
        outputs = self._run("tokenize", prompt=_as_prompt_batch(text))
        ids = [int(i) for i in outputs["token_ids"][0]]
        start_tokens = int(outputs["start_tokens"][0]) if "start_tokens" in outputs else 1
        return ids[1 - start_tokens :] if with_start else ids[1:]

    def _start_tokens(self) -> int:
        """1 if the model puts a start token before the text, else 0."""
        return len(self.token_ids("", with_start=True))

    def text(self, token_ids) -> str:
        import numpy as np

        ids = np.asarray([list(token_ids)], dtype=np.int32)
        return _decode(self._run("detokenize", token_ids=ids)["text"][0])

    def log_likelihoods(self, token_ids_with_start) -> list[float]:
        """log p of each token after the first (give the start token first, as tokenize does)."""
        import numpy as np

        ids = np.asarray([list(token_ids_with_start)], dtype=np.int32)
        return [float(x) for x in self._run("score", token_ids=ids)["log_likelihoods"][0]]


class TFLiteModel(_TracedGraphModel):
    """The codelab route's .tflite: string in, string and ids out."""

    route = TFLITE_ROUTE

    def __init__(self, model_path, num_threads: int | None = None):
        from llm2tflite.codelab.trace import GENERATE_SIGNATURE, SIGNATURES

        started = time.perf_counter()
        self.path = str(model_path)
        try:
            # TensorFlow's interpreter runs no flatbuffer verifier: a damaged file can crash
            # the process (segmentation fault) where LiteRT's verifier refuses it.
            flatbuffer.verify(self.path)
            self.interpreter = load_interpreter(self.path, num_threads)
        except (ValueError, RuntimeError) as error:
            # The flatbuffer verifier's refusal ("The model is not a valid Flatbuffer buffer",
            # "Constant buffer 18 specified an out of range offset") of a damaged file.
            reason = str(error).strip().splitlines()[0] if str(error).strip() else "invalid"
            raise ModelOpenError(
                f"{model_path} is damaged (truncated or altered since it was built: {reason}); "
                "rebuild it or copy it again"
            ) from None
        signatures = self.interpreter.get_signature_list()
        outputs = set(signatures.get(GENERATE_SIGNATURE, {}).get("outputs", []))
        if not {"token_ids", "prompt_tokens"} <= outputs:
            raise ModelOpenError(
                f"{model_path}: its {GENERATE_SIGNATURE} returns {sorted(outputs)}, not its token "
                "ids: it was converted by an older llm2tflite; rebuild it (snakemake reruns trace "
                "and convert)"
            )
        try:
            self._runners = {
                name: self.interpreter.get_signature_runner(name) for name in SIGNATURES
            }
        except (ValueError, RuntimeError) as error:  # a kernel's Prepare refuses its tensors
            reason = str(error).strip().splitlines()[0] if str(error).strip() else "invalid"
            raise ModelOpenError(
                f"{model_path} is damaged (its signatures cannot be prepared: {reason}); "
                "rebuild it or copy it again"
            ) from None
        self.load_seconds = time.perf_counter() - started

    def _run(self, name: str, **inputs) -> dict:
        try:
            return self._runners[name](**inputs)
        except (ValueError, RuntimeError) as error:
            # Inputs are always well-formed here: a kernel that fails (a Flex op's damaged
            # NodeDef: UnicodeDecodeError, a ValueError) is a damaged file.
            reason = str(error).strip().splitlines()[0] if str(error).strip() else "failed"
            raise ModelOpenError(
                f"{self.path} is damaged (its {name} signature fails: "
                f"{type(error).__name__}: {reason[:200]}); rebuild it or copy it again"
            ) from None


class SavedModelRuntime(_TracedGraphModel):
    """The traced SavedModel run in TensorFlow: the same graph the .tflite files come from."""

    route = TENSORFLOW_ROUTE

    def __init__(self, saved_model_dir, threads: int | None = None):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the TF Text ops of the graph)

        from llm2tflite.codelab.trace import SIGNATURES

        started = time.perf_counter()
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        self._tf = tf
        self.path = str(saved_model_dir)
        self.loaded = tf.saved_model.load(self.path)
        self._signatures = {name: self.loaded.signatures[name] for name in SIGNATURES}
        self.load_seconds = time.perf_counter() - started

    def _run(self, name: str, **inputs) -> dict:
        tf = self._tf
        tensors = {key: tf.constant(value) for key, value in inputs.items()}
        return {key: value.numpy() for key, value in self._signatures[name](**tensors).items()}
