"""Run a converted model in the TFLite interpreter, with the TF Text custom-op kernels.

As in the codelab: ``InterpreterWithCustomOps`` + ``tensorflow_text``'s ``SELECT_TFTEXT_OPS``
registrar; Select TF ops run in the Flex delegate that the TF 2.18.1 wheel still exports.
"""

from __future__ import annotations

import time
import warnings

import llm2tflite  # noqa: F401


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

    # A batch of one, never a scalar (see llm2tflite.trace).
    return np.array([prompt.encode("utf-8") if isinstance(prompt, str) else prompt], dtype=object)


class TFLiteModel:
    """The two signatures of a converted model, with str in and str out."""

    def __init__(self, model_path: str, num_threads: int | None = None):
        from llm2tflite.trace import (
            DETOKENIZE_SIGNATURE,
            GENERATE_SIGNATURE,
            SCORE_SIGNATURE,
            TOKENIZE_SIGNATURE,
        )

        started = time.perf_counter()
        self.interpreter = load_interpreter(model_path, num_threads)
        self._generate = self.interpreter.get_signature_runner(GENERATE_SIGNATURE)
        self._tokenize = self.interpreter.get_signature_runner(TOKENIZE_SIGNATURE)
        self._detokenize = self.interpreter.get_signature_runner(DETOKENIZE_SIGNATURE)
        self._score = self.interpreter.get_signature_runner(SCORE_SIGNATURE)
        self.load_seconds = time.perf_counter() - started

    def generate(self, prompt: str | bytes) -> str:
        generated = self._generate(prompt=_as_prompt_batch(prompt))["generated_text"][0]
        # Byte-level BPE can stop in the middle of a multi-byte character.
        return generated.decode("utf-8", errors="replace")

    def token_ids(self, text: str | bytes, with_start: bool = False) -> list[int]:
        """The text's token ids; the start token the signature puts first only if asked."""
        ids = self._tokenize(prompt=_as_prompt_batch(text))["token_ids"][0]
        return [int(i) for i in (ids if with_start else ids[1:])]

    def text(self, token_ids) -> str:
        import numpy as np

        ids = np.asarray([list(token_ids)], dtype=np.int32)
        return self._detokenize(token_ids=ids)["text"][0].decode("utf-8", errors="replace")

    def log_likelihoods(self, token_ids_with_start) -> list[float]:
        """log p of each token after the first (give the start token first, as tokenize does)."""
        import numpy as np

        ids = np.asarray([list(token_ids_with_start)], dtype=np.int32)
        return [float(x) for x in self._score(token_ids=ids)["log_likelihoods"][0]]

    def count_new_tokens(self, prompt: str | bytes, generated_text: str) -> int:
        """Tokens added to the prompt, counted by the model's own tokenizer.

        Re-tokenizing the output can merge differently at the prompt's end than generation did;
        the count is exact for the usual case of a prompt that ends on a token boundary.
        """
        return len(self.token_ids(generated_text)) - len(self.token_ids(prompt))
