"""What conversion and quantization cost in quality: each variant against the Keras model.

Figures (``docs/quality.md``):

- **Distributions, teacher-forced on held-out text, full vocabulary.** The Keras reference keeps
  each position's logits for a bounded number of positions (fp16, centered, with their float32
  log-normalizer: ``--logits-mb``, whole lines in order until the budget is spent). Each variant
  gives its logits over the same ids (Keras's tokenization of each line), through every path a
  runtime uses: the codelab route's ``score`` signature; the LiteRT route's ``decode`` from
  position 0, and for each ``prefill_<T>``: chunks of T ids prefilled, then ``decode`` over the
  rest of the line, so the logits that follow the chunk check what the chunk wrote to the cache
  (the chunk's own logits are compared too where the export has them). Per position:
  KL(Keras || variant) in nats, whether the most likely token is Keras's (top-1), and the Pearson
  correlation of the two logit vectors over the vocabulary: on random-weight twins, whose logits
  are nearly uniform, KL and top-1 say little but a damaged file's logits no longer correlate.
  A variant's figure is its worst path's (highest KL mean and p99, lowest top-1 and correlation).
- **Generation, every token counted.** Greedy continuations of the fidelity prompts (the
  ``serving_default`` cached loop of the codelab route; prefill + decode of the LiteRT route) as
  ids, with the stop token counted as one more token when a side stopped before its length limit:
  sequence agreement is the fraction of positions of the longer of the two that hold the same id
  (tokens past Keras's stop, and missing before it, disagree); exact match requires all of them.
  The leading run of agreeing ids is reported beside, not gated.
- **Perplexity** on the held-out text (every line, cut to the LiteRT cache), from the same logits
  (``score``; LiteRT: the ``decode`` path), with Keras's over the same tokens.

Quality gates (config ``quality_gates:``, one set of thresholds per variant name, for every route)
turn these figures into a verdict; :func:`gate_failures` is the one place that judges, used by
the workflow's gate rule (which fails, one line per missed gate) and by the summary (which shows
pass/FAIL). A figure that is not a number misses every gate that reads it.

Three commands: ``python -m llm2tflite.evaluate.fidelity keras ...`` writes the Keras reference
(JSON and the .npy of logits) once per model; ``... variant --model FILE ...`` measures one
variant of any route against it (route detected, ``llm2tflite.model_files``); ``... gate
--fidelity F.json --gates-json ...`` applies the thresholds: exit 1 with a one-line reason when a
gate is missed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import llm2tflite  # noqa: F401
from llm2tflite.core import atomic, cli_options, tf_logging
from llm2tflite.core.generation import Generation
from llm2tflite.litert.contract import cache_input_shapes

# gate name -> (figure, "min" or "max", how the failure line names it)
GATES = {
    "min_exact_match_rate": ("exact_match_rate", "min", "greedy ids (stop included) equal Keras's"),
    "min_sequence_agreement": (
        "sequence_agreement",
        "min",
        "whole-continuation agreement with Keras (stop token counted)",
    ),
    "max_kl_mean": ("kl_mean", "max", "mean KL(Keras ‖ variant) nats/token"),
    "max_kl_p99": ("kl_p99", "max", "p99 KL(Keras ‖ variant) nats/token"),
    "min_top1_agreement": ("top1_agreement", "min", "top-1 agreement with Keras"),
    "min_logit_correlation": ("logit_correlation", "min", "mean logit correlation with Keras"),
    "max_perplexity_relative_difference": (
        "perplexity_relative_difference",
        "max",
        "perplexity relative difference from Keras",
    ),
}
GATE_KEYS = tuple(GATES)
# Figures stated as percentages in a failure line.
PERCENT_FIGURES = {
    "exact_match_rate",
    "sequence_agreement",
    "top1_agreement",
    "perplexity_relative_difference",
}
STOP = "<stop>"  # the stop token of a continuation that stopped (the ids do not include it)
DEFAULT_LOGITS_MB = 64


def read_lines(path, count: int) -> list[str]:
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    return lines[:count]


def perplexity(total_log_likelihood: float, token_count: int) -> float:
    return math.exp(-total_log_likelihood / token_count)


def leading_agreement(ids_a, ids_b) -> int:
    """How many leading ids two sequences share."""
    count = 0
    for a, b in zip(ids_a, ids_b):
        if a != b:
            break
        count += 1
    return count


def continuation(generation: Generation, max_length: int) -> list:
    """The generated ids, then :data:`STOP` if the generation stopped before ``max_length``."""
    ids = list(generation.new_token_ids)
    return ids + [STOP] if len(generation.token_ids) < max_length else ids


def sequence_agreement(ids_a, ids_b) -> float:
    """Positions holding the same id, over the length of the longer sequence (1 if both empty)."""
    longest = max(len(ids_a), len(ids_b))
    if longest == 0:
        return 1.0
    return sum(a == b for a, b in zip(ids_a, ids_b)) / longest


def compare_generations(
    variant: Generation, keras: Generation, max_length: int, variant_max_length: int | None = None
) -> dict:
    """Every generated id and the stop token against Keras's (see the module docstring)."""
    ours = continuation(variant, variant_max_length or max_length)
    theirs = continuation(keras, max_length)
    prompt_equal = (
        variant.token_ids[: variant.prompt_tokens] == keras.token_ids[: keras.prompt_tokens]
    )
    return {
        "exact_match": prompt_equal and ours == theirs,
        "sequence_agreement": sequence_agreement(ours, theirs) if prompt_equal else 0.0,
        "leading_tokens_agree": leading_agreement(variant.new_token_ids, keras.new_token_ids),
        "new_tokens": variant.new_tokens,
        "keras_new_tokens": keras.new_tokens,
        "stopped": bool(ours and ours[-1] == STOP),
        "keras_stopped": bool(theirs and theirs[-1] == STOP),
        "prompt_tokens_equal": prompt_equal,
    }


def summarize(comparisons: list[dict]) -> dict:
    n = len(comparisons)
    return {
        "exact_match_rate": sum(c["exact_match"] for c in comparisons) / n,
        "sequence_agreement": sum(c["sequence_agreement"] for c in comparisons) / n,
        "mean_leading_tokens_agree": sum(c["leading_tokens_agree"] for c in comparisons) / n,
        "mean_keras_new_tokens": sum(c["keras_new_tokens"] for c in comparisons) / n,
    }


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def gate_failures(result: dict, gates: dict | None, named: bool = True) -> list[str]:
    """One line per gate the fidelity ``result`` misses (empty: every gate passed).

    Each line starts with ``route/variant:`` unless ``named`` is false (a table row says it),
    then names the figure, its value and the threshold.
    """
    gates = gates or {}
    unknown = sorted(set(gates) - set(GATE_KEYS))
    if unknown:
        raise ValueError(f"unknown quality gate(s) {unknown}; known: {', '.join(GATE_KEYS)}")
    name = "/".join(str(result[k]) for k in ("route", "variant") if result.get(k))
    name = f"{name}: " if named and name else ""
    failures = []
    for gate, (figure, kind, label) in GATES.items():
        threshold = gates.get(gate)
        if threshold is None:
            continue
        value = result.get(figure)
        passed = _finite(value) and (value >= threshold if kind == "min" else value <= threshold)
        if passed:
            continue
        where = (
            f" ({result['worst_path'][figure]} path)"
            if result.get("worst_path", {}).get(figure)
            else ""
        )
        failures.append(
            f"{name}{gate}: {label} {_figure(figure, value)}{where} (gate: "
            f"{'at least' if kind == 'min' else 'at most'} {_figure(figure, threshold)})"
        )
    return failures


def _figure(figure: str, value) -> str:
    if not _finite(value):
        return str(value)
    if figure in PERCENT_FIGURES:
        return f"{100 * value:.{3 if figure == 'perplexity_relative_difference' else 1}f}%"
    return f"{value:.4g}"


# ---- the Keras side ----------------------------------------------------------------------------


def keras_reference(
    preset: str,
    max_length: int,
    sampler: str,
    prompts,
    lines,
    logits_mb: float = DEFAULT_LOGITS_MB,
) -> dict:
    """Greedy generations of ``prompts`` and one teacher-forced pass over ``lines``.

    Returns the JSON-able reference plus ``"logits"``: fp16 centered logits [positions, V] of the
    first lines that fit ``logits_mb`` (whole lines), whose float32 log-normalizers
    (``logits_log_normalizer``) make each row an exact log-distribution: row - normalizer.
    """
    import numpy as np
    import tensorflow as tf

    from llm2tflite.codelab.trace import next_token_log_likelihoods
    from llm2tflite.inputs.reference import keras_generate
    from llm2tflite.inputs.sources import load_causal_lm

    causal_lm = load_causal_lm(preset, sampler=sampler)
    generations = []
    for prompt in prompts:
        generation = keras_generate(causal_lm, prompt, max_length)
        generations.append(
            {
                "prompt": prompt,
                "output": generation.text,
                "token_ids": generation.token_ids,
                "prompt_tokens": generation.prompt_tokens,
            }
        )
    tokenizer = causal_lm.preprocessor.tokenizer
    tokenize = tf.function(tokenizer)
    # The start token, or nothing for a family without one (Qwen): its first id goes unscored.
    start = [] if tokenizer.start_token_id is None else [int(tokenizer.start_token_id)]
    budget = int(logits_mb * 2**20)
    total, count, per_line, line_ids = 0.0, 0, [], []
    kept_rows, normalizers, stored_lines, stored_bytes = [], [], 0, 0
    # The stored rows are the first lines' (the variant side pairs them with lines in order):
    # once a line does not fit, no later line is stored, even a shorter one.
    storing = True
    for line in lines:
        ids = start + [int(i) for i in tokenize(tf.constant([line])).to_list()[0]]
        token_ids = tf.constant([ids], tf.int32)
        logits = causal_lm(
            {"token_ids": token_ids, "padding_mask": tf.ones_like(token_ids, tf.bool)}
        )
        log_likelihoods = next_token_log_likelihoods(logits, token_ids).numpy()[0]
        total += float(np.sum(log_likelihoods.astype(np.float64)))
        count += len(ids) - 1
        per_line.append([float(x) for x in log_likelihoods])
        line_ids.append(ids)
        rows = np.asarray(logits, np.float64)[0, :-1]  # position p predicts ids[p + 1]
        storing = storing and stored_bytes + rows.size * 2 <= budget
        if storing:
            centered = (rows - rows.mean(axis=-1, keepdims=True)).astype(np.float16)
            exact = centered.astype(np.float64)
            kept_rows.append(centered)
            normalizers.extend(float(x) for x in np.logaddexp.reduce(exact, axis=-1))
            stored_lines += 1
            stored_bytes += centered.nbytes
    vocabulary = int(np.asarray(logits).shape[-1])
    return {
        "preset": preset,
        "max_length": max_length,
        "generations": generations,
        "perplexity_lines": len(lines),
        "perplexity_tokens": count,
        "perplexity": perplexity(total, count),
        "line_log_likelihoods": per_line,
        "line_token_ids": line_ids,
        "logits_lines": stored_lines,
        "logits_positions": len(normalizers),
        "logits_vocabulary": vocabulary,
        "logits_bytes": stored_bytes,
        "logits_budget_mb": logits_mb,
        "logits_log_normalizer": normalizers,
        "logits": (
            np.concatenate(kept_rows) if kept_rows else np.zeros((0, vocabulary), np.float16)
        ),
    }


# ---- the variant side --------------------------------------------------------------------------


def position_figures(keras_rows, keras_normalizers, variant_rows) -> dict:
    """Per position: KL(Keras || variant) nats, top-1 equal, Pearson correlation of the logits."""
    import numpy as np

    keras_log_p = keras_rows.astype(np.float64) - np.asarray(keras_normalizers)[:, None]
    variant = np.asarray(variant_rows, np.float64)
    variant_log_q = variant - np.logaddexp.reduce(variant, axis=-1, keepdims=True)
    p = np.exp(keras_log_p)
    kl = np.sum(p * (keras_log_p - variant_log_q), axis=-1)
    top1 = np.argmax(keras_log_p, axis=-1) == np.argmax(variant, axis=-1)
    a = keras_log_p - keras_log_p.mean(axis=-1, keepdims=True)
    b = variant - variant.mean(axis=-1, keepdims=True)
    denominator = np.sqrt(np.sum(a * a, axis=-1) * np.sum(b * b, axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = np.where(denominator > 0, np.sum(a * b, axis=-1) / denominator, 0.0)
    return {"kl": np.maximum(kl, 0.0), "top1": top1, "correlation": correlation}


def aggregate(figures: list[dict]) -> dict:
    import numpy as np

    if not figures:
        return {"positions": 0}
    kl = np.concatenate([f["kl"] for f in figures])
    return {
        "positions": int(kl.size),
        "kl_mean": float(np.mean(kl)),
        "kl_p99": float(np.percentile(kl, 99)),
        "top1_agreement": float(np.mean(np.concatenate([f["top1"] for f in figures]))),
        "logit_correlation": float(np.mean(np.concatenate([f["correlation"] for f in figures]))),
    }


class _CodelabScorer:
    """The codelab route's ``score`` signature: every position's logits in one call."""

    limit = None

    def __init__(self, model_path):
        from llm2tflite.codelab.runtime import load_interpreter

        interpreter = load_interpreter(str(model_path))
        outputs = interpreter.get_signature_list()["score"]["outputs"]
        if "logits" not in outputs:
            raise SystemExit(
                f"{model_path}: its score signature has no logits output (traced before the "
                "fidelity figures needed them): rebuild it"
            )
        self.runner = interpreter.get_signature_runner("score")
        self.paths = ["score"]

    def logits(self, path: str, ids):
        import numpy as np

        out = self.runner(token_ids=np.asarray([ids], np.int32))
        return {p: row for p, row in enumerate(np.asarray(out["logits"][0, : len(ids) - 1]))}


class _LiteRTScorer:
    """The LiteRT route's signatures driven as the contract says (docs/litert-contract.md)."""

    def __init__(self, model_path):
        import numpy as np
        from ai_edge_litert.interpreter import Interpreter

        self.info = json.loads((Path(model_path).parent / "litert_export.json").read_text())
        self.limit = int(self.info["cache_length"])
        self.hidden = np.float32(self.info["mask"]["hidden"])
        interpreter = Interpreter(model_path=str(model_path), num_threads=1)
        self.runners = {
            name: interpreter.get_signature_runner(name)
            for name in [self.info["decode_signature"], *self.info["prefill_signatures"]]
        }
        self.prefill = {int(t): name for name, t in self.info["prefill_signatures"].items()}
        self.paths = [self.info["decode_signature"]] + [
            self.prefill[t] for t in sorted(self.prefill)
        ]

    def _empty_caches(self):
        import numpy as np

        return {
            name: np.zeros(shape, np.float32)
            for name, shape in cache_input_shapes(self.info).items()
        }

    def _call(self, name, tokens, position, count, caches):
        """One call at ``position`` with ``count`` real ids (the rest of the chunk is padding)."""
        import numpy as np

        length = len(tokens)
        mask = np.full((1, 1, length, self.limit), self.hidden, np.float32)
        for t in range(count):
            mask[0, 0, t, : position + t + 1] = 0.0
        input_pos = np.zeros(length, np.int32)
        input_pos[:count] = np.arange(position, position + count)
        out = self.runners[name](
            tokens=np.asarray([tokens], np.int32), input_pos=input_pos, mask=mask, **caches
        )
        caches.update({key: out[key] for key in caches})
        return out.get("logits")

    def logits(self, path: str, ids):
        """Logits per position (position p predicts ids[p + 1]) along ``path``."""
        import numpy as np

        ids = ids[: self.limit]
        last = len(ids) - 2  # the last position with a target
        caches, rows, position = self._empty_caches(), {}, 0
        if path != self.info["decode_signature"]:
            length = self.info["prefill_signatures"][path]
            while last + 1 - position >= length and position + length <= self.limit:
                logits = self._call(
                    path, ids[position : position + length], position, length, caches
                )
                if logits is not None:
                    rows.update({position + t: logits[0, t] for t in range(length)})
                position += length
            if position == 0 and last >= 1:
                # A line shorter than the chunk: a padded chunk, one decode step at least after.
                count = min(length, last)
                chunk = ids[:count] + [0] * (length - count)
                logits = self._call(path, chunk, 0, count, caches)
                if logits is not None:
                    rows.update({t: logits[0, t] for t in range(count)})
                position = count
        for p in range(position, last + 1):
            rows[p] = np.array(
                self._call(self.info["decode_signature"], [ids[p]], p, 1, caches)[0, 0]
            )
        return rows


def scorer_for(model_path, route: str):
    return _CodelabScorer(model_path) if route == "tflite" else _LiteRTScorer(model_path)


def distribution_figures(scorer, reference: dict, keras_logits) -> tuple[dict, dict]:
    """Per path figures over the stored Keras positions, and each line's log-likelihoods of the
    first path (codelab ``score``; LiteRT ``decode``) over every perplexity line."""
    import numpy as np

    normalizers = np.asarray(reference["logits_log_normalizer"])
    per_path, line_log_likelihoods = {}, []
    for path in scorer.paths:
        figures, offset = [], 0
        for index, ids in enumerate(reference["line_token_ids"]):
            stored = index < reference["logits_lines"]
            if not stored and path != scorer.paths[0]:
                break
            rows = scorer.logits(path, ids) if len(ids) > 1 else {}
            if path == scorer.paths[0] and rows:
                kept = ids[: scorer.limit] if scorer.limit else ids
                logits = np.stack([rows[p] for p in range(len(kept) - 1)]).astype(np.float64)
                normalizer = np.logaddexp.reduce(logits, axis=-1)
                targets = np.asarray(kept[1:])
                line_log_likelihoods.append(
                    (logits[np.arange(len(targets)), targets] - normalizer).tolist()
                )
            elif path == scorer.paths[0]:
                line_log_likelihoods.append([])
            if stored:
                positions = sorted(rows)
                if positions:
                    indices = [offset + p for p in positions]
                    figures.append(
                        position_figures(
                            keras_logits[indices],
                            normalizers[indices],
                            np.stack([rows[p] for p in positions]),
                        )
                    )
                offset += len(ids) - 1
        per_path[path] = aggregate(figures)
    return per_path, line_log_likelihoods


WORST = {"kl_mean": max, "kl_p99": max, "top1_agreement": min, "logit_correlation": min}


def variant_fidelity(
    model_path: str, model_name: str, variant: str, reference: dict, keras_logits=None
) -> dict:
    import numpy as np

    from llm2tflite.model_files import open_model

    if keras_logits is None:
        keras_logits = reference["logits"]
    keras_logits = np.asarray(keras_logits)
    model = open_model(model_path)
    max_length = reference["max_length"]
    # The longest generation the variant can give (its own max_length, the LiteRT cache): one
    # that ends before it stopped.
    variant_max_length = min(
        max_length,
        getattr(model, "max_length", None) or max_length,
        getattr(model, "score_limit", None) or max_length,
    )
    prompts = []
    for record in reference["generations"]:
        keras = Generation(record["output"], record["token_ids"], record["prompt_tokens"])
        generation = model.generate(record["prompt"], max_length=max_length)
        prompts.append(
            {
                "prompt": record["prompt"],
                "output": generation.text,
                "keras_output": keras.text,
                **compare_generations(generation, keras, max_length, variant_max_length),
            }
        )
    scorer = scorer_for(model_path, model.route)
    per_path, line_log_likelihoods = distribution_figures(scorer, reference, keras_logits)
    total, keras_total, count, cut_lines = 0.0, 0.0, 0, 0
    for ours, keras_line in zip(line_log_likelihoods, reference["line_log_likelihoods"]):
        cut_lines += len(ours) < len(keras_line)
        total += math.fsum(ours)
        keras_total += math.fsum(keras_line[: len(ours)])
        count += len(ours)
    result = {
        "model": model_name,
        "route": model.route,
        "variant": variant,
        "model_path": str(model_path),
        "model_bytes": Path(model_path).stat().st_size,
        **summarize(prompts),
        "perplexity": perplexity(total, count),
        "keras_perplexity": perplexity(keras_total, count),
        "perplexity_tokens": count,
        "keras_perplexity_tokens": reference.get("perplexity_tokens"),
        "perplexity_lines_cut_to_score_limit": cut_lines,
        "distribution_positions": reference["logits_positions"],
        "paths": per_path,
        "worst_path": {},
        "prompts": prompts,
    }
    for figure, pick in WORST.items():
        values = {path: f[figure] for path, f in per_path.items() if figure in f}
        if values:
            path = pick(values, key=lambda name: values[name])
            result[figure] = values[path]
            result["worst_path"][figure] = path
        else:
            result[figure] = float("nan")
    result["perplexity_relative_difference"] = (
        abs(result["perplexity"] - result["keras_perplexity"]) / result["keras_perplexity"]
    )
    return result


def _print_result(result: dict) -> None:
    print(
        f"[{result['route']}/{result['variant']}] exact match "
        f"{result['exact_match_rate']:.2f}, sequence agreement "
        f"{result['sequence_agreement']:.3f}, KL mean {result['kl_mean']:.3g} p99 "
        f"{result['kl_p99']:.3g} nats, top-1 {result['top1_agreement']:.4f}, logit correlation "
        f"{result['logit_correlation']:.5f}, perplexity {result['perplexity']:.4f} (Keras "
        f"{result['keras_perplexity']:.4f}, {100 * result['perplexity_relative_difference']:.3f}%"
        " apart)"
    )
    for path, figures in result["paths"].items():
        print(f"  {path}: {json.dumps(figures)}")


def logits_path_of(reference_path) -> Path:
    return Path(reference_path).with_suffix(".logits.npy")


def load_reference(reference_path) -> dict:
    import numpy as np

    with open(reference_path, encoding="utf-8") as f:
        reference = json.load(f)
    reference["logits"] = np.load(logits_path_of(reference_path))
    return reference


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    keras_cli = commands.add_parser("keras", help="the Keras model's reference")
    keras_cli.add_argument("--preset", required=True)
    keras_cli.add_argument("--max-length", type=int, required=True)
    keras_cli.add_argument("--sampler", default="greedy")
    cli_options.add_prompts_option(keras_cli)
    keras_cli.add_argument("--text", required=True, help="held-out text, one line per sample")
    keras_cli.add_argument("--lines", type=int, required=True, help="lines scored")
    keras_cli.add_argument(
        "--logits-mb",
        type=float,
        default=DEFAULT_LOGITS_MB,
        help="most MB of fp16 logits kept (whole lines, in order)",
    )
    keras_cli.add_argument("--out", required=True, help="JSON; the logits go to <out>.logits.npy")
    variant_cli = commands.add_parser("variant", help="one variant (any route) against Keras")
    variant_cli.add_argument("--model", required=True, help=".tflite file of either route")
    variant_cli.add_argument("--model-name", required=True)
    variant_cli.add_argument("--variant", required=True)
    variant_cli.add_argument("--keras-reference", required=True)
    variant_cli.add_argument("--out", required=True)
    gate_cli = commands.add_parser("gate", help="apply the variant's quality gates")
    gate_cli.add_argument("--fidelity", required=True, help="the variant's fidelity JSON")
    cli_options.add_json_option(
        gate_cli,
        "--gates-json",
        "gates",
        "thresholds, e.g. '{\"max_kl_mean\": 0.05}'",
    )
    gate_cli.add_argument("--out", required=True, help="verdict JSON, written only on a pass")
    args = parser.parse_args(argv)
    if args.command == "keras":
        import io

        import numpy as np

        from llm2tflite.inputs.sources import exit_on_unavailable_preset

        reference = exit_on_unavailable_preset(keras_reference)(
            args.preset,
            args.max_length,
            args.sampler,
            args.prompts,
            read_lines(args.text, args.lines),
            args.logits_mb,
        )
        buffer = io.BytesIO()
        np.save(buffer, reference.pop("logits"))
        atomic.write_bytes(logits_path_of(args.out), buffer.getvalue())
        atomic.write_json(args.out, reference)
        print(
            f"Keras perplexity {reference['perplexity']:.4f} on "
            f"{reference['perplexity_tokens']} tokens; logits of {reference['logits_positions']} "
            f"positions ({reference['logits_lines']} lines) kept, "
            f"{reference['logits_bytes'] / 2**20:.1f} MB"
        )
        return
    if args.command == "variant":
        result = variant_fidelity(
            args.model, args.model_name, args.variant, load_reference(args.keras_reference)
        )
        _print_result(result)
        atomic.write_json(args.out, result)
        return
    with open(args.fidelity, encoding="utf-8") as f:
        result = json.load(f)
    failures = gate_failures(result, args.gates)
    if failures:
        # One line: the reason, as Snakemake shows it with the failed job.
        print("quality gate FAILED: " + "; ".join(failures), file=sys.stderr)
        sys.exit(1)
    atomic.write_json(
        args.out,
        {
            "model": result.get("model"),
            "route": result.get("route"),
            "variant": result.get("variant"),
            "gates": args.gates,
            "passed": True,
        },
    )
    print(f"quality gates passed: {args.fidelity} ({json.dumps(args.gates, sort_keys=True)})")


if __name__ == "__main__":
    # The log keeps the stage's own lines, not Keras's XLA notes ("XLA service ... initialized").
    with tf_logging.native_notes_hidden():
        main()
