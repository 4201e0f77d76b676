"""llm2tflite: KerasHub causal LM -> on-device TensorFlow Lite, one module per workflow stage.

Importing the package is cheap (no TensorFlow): stage modules import TF themselves, so the
Snakefile and the CLIs' ``--help`` stay instant.
"""

import os

# KerasHub runs on any Keras backend; tracing to a TF graph needs the TensorFlow one. Set it
# before any stage module imports keras.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TF's C++ INFO/WARNING chatter (oneDNN, CPU features) buries the messages users need; errors
# still show. Set before any stage imports TensorFlow (see llm2tflite/core/tf_logging.py).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from llm2tflite.core import tf_logging as _tf_logging  # noqa: E402  (after the environment is set

# TFLite's INFO lines (Flex delegate notes) ignore TF_CPP_MIN_LOG_LEVEL: lower TFLite's own
# threshold whenever TensorFlow gets imported.
_tf_logging.quiet_when_tensorflow_loads()

__version__ = "0.1.0"

# The codelab's prompt: the default model's corpus is built around it, and it is the default of
# every stage that tries a model on one prompt.
CODELAB_PROMPT = "Estoy disfrutando de"
