"""llm2tflite: KerasHub causal LM -> on-device TensorFlow Lite, one module per workflow stage.

Importing the package is cheap (no TensorFlow): stage modules import TF themselves, so the
Snakefile and the CLIs' ``--help`` stay instant.
"""

import os

# KerasHub runs on any Keras backend; tracing to a TF graph needs the TensorFlow one. Set it
# before any stage module imports keras.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TF's C++ INFO/WARNING chatter (oneDNN, CUDA probing) buries the messages users need.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
