// The LiteRT route's prefill/decode .tflite in LiteRT.js: llm2tflite/litert/runtime.py's
// generation, step for step, so that greedy text equals `python -m llm2tflite generate`'s.
//
// 1. the prompt is tokenized (in JS) and the start token put first. A prompt that fills
//    max_length (at most the cache length) leaves no room for a new token: ContextFullError,
//    where the CLI would keep its first max_length - 1 tokens (docs/web.md says why). Otherwise
//    it is cut, as the CLI cuts it, to min(sequence_length, max_length - 1) tokens (only an
//    export info with a sequence_length below that cuts anything);
// 2. every prompt token but the last is prefilled in chunks of the exported lengths
//    (prefillPlan: the longest while the rest is at least that long, then the shortest that holds
//    the rest, padded with hidden rows; never past the cache end, decode steps where nothing fits);
// 3. decode takes the last prompt token, then each new one, until a stop token (not kept) or
//    max_length tokens in all (start token included; at most the cache length).
// The caches go in and out of every call under the same names (kv_cache_k_<i>, kv_cache_v_<i>):
// each call's output tensors are the next call's inputs, as the contract asks.

import { loadAndCompile, loadLiteRt, Tensor } from "@litertjs/core";

const CACHE_NAME = /^kv_cache_[kv]_\d+$/;

export class ModelError extends Error {}

// The prompt alone fills the context: no new token fits (the page's data-error "context full").
export class ContextFullError extends ModelError {
  constructor(promptTokens, maxLength, cacheLength) {
    const fix =
      maxLength < cacheLength
        ? `shorten the prompt or raise max_length (the model's context holds ${cacheLength})`
        : "shorten the prompt";
    super(
      `context full: the prompt is ${promptTokens} tokens (start token included) and ` +
        `max_length ${maxLength} leaves no room for a new token; ${fix}`,
    );
    this.promptTokens = promptTokens;
  }
}

export function prefillPlan(count, lengths, cacheLength, start = 0) {
  if (start + count > cacheLength) {
    throw new ModelError(
      `${count} tokens from position ${start} exceed the cache of ${cacheLength} positions`,
    );
  }
  const sorted = [...new Set(lengths)].sort((a, b) => a - b);
  const plan = [];
  let position = start;
  while (count > 0) {
    const fitting = sorted.filter((t) => position + t <= cacheLength);
    let step;
    if (!fitting.length) step = [1, 1];
    else if (count >= fitting[fitting.length - 1]) {
      const longest = fitting[fitting.length - 1];
      step = [longest, longest];
    } else step = [fitting.find((t) => t >= count), count];
    plan.push(step);
    position += step[1];
    count -= step[1];
  }
  return plan;
}

// Let the page paint the text streamed so far: a task of its own, without setTimeout's 4 ms
// clamp on nested timers (which would dominate a small model's step).
function yieldToPage() {
  if (globalThis.scheduler?.yield) return globalThis.scheduler.yield();
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = resolve;
    channel.port2.postMessage(null);
  });
}

let runtimeLoaded = null;

// LiteRT.js's wasm runtime, once per page: the threaded build only where the page is
// cross-origin isolated (COOP/COEP headers) and more than one thread is asked for.
export function loadRuntime(wasmDirectory, threads) {
  if (runtimeLoaded === null) {
    const threaded = threads > 1 && self.crossOriginIsolated;
    runtimeLoaded = loadLiteRt(wasmDirectory, threaded ? { threads: true } : undefined);
  }
  return runtimeLoaded;
}

export class LiteRTModel {
  static async open(modelUrl, info, tokenizer, { threads = 1 } = {}) {
    const options = { accelerator: "wasm" };
    if (threads > 1) options.cpuOptions = { numThreads: threads };
    let compiled;
    try {
      compiled = await loadAndCompile(modelUrl, options);
    } catch (error) {
      // LiteRT.js's message names only its own source line; the cause is in the console. A file
      // larger than its WebAssembly runtime can allocate fails here (docs/web.md: the 614 MB
      // int8 of the Qwen3-0.6B twin), as does a damaged one.
      const detail = (error instanceof Error ? error.message : String(error)).split("\n")[0];
      throw new ModelError(
        `LiteRT.js could not load ${decodeURIComponent(modelUrl.split("/").pop())} (${detail}; ` +
          "the browser console has the cause): a damaged file, or one too large for its " +
          "WebAssembly memory, where a smaller variant (web.variant: int4) may load",
      );
    }
    return new LiteRTModel(compiled, info, tokenizer);
  }

  constructor(compiled, info, tokenizer) {
    this.compiled = compiled;
    this.info = info;
    this.tokenizer = tokenizer;
    const signatures = compiled.signatures;
    if (!signatures.decode) throw new ModelError("the model has no decode signature");
    this.prefill = {};
    for (const [name, runner] of Object.entries(signatures)) {
      const match = /^prefill_(\d+)$/.exec(name);
      if (match) this.prefill[Number(match[1])] = runner;
    }
    this.prefillLengths = Object.keys(this.prefill).map(Number);
    const inputs = signatures.decode.getInputDetails();
    this.cacheShapes = Object.fromEntries(
      inputs.filter((d) => CACHE_NAME.test(d.name)).map((d) => [d.name, Array.from(d.shape)]),
    );
    const mask = inputs.find((d) => d.name === "mask");
    this.cacheLength = mask.shape[mask.shape.length - 1];
    if (info.cache_length !== undefined && info.cache_length !== this.cacheLength) {
      throw new ModelError(
        `litert_export.json describes a cache of ${info.cache_length} positions, ` +
          `the model has ${this.cacheLength}`,
      );
    }
    this.hidden = Math.fround(info.mask?.hidden ?? -0.7 * 3.4028234663852886e38);
    this.startTokenId = info.start_token_id;
    this.stopTokenIds = new Set(info.stop_token_ids);
    this.addStartToken = info.add_start_token ?? true;
    this.maxLength = Math.min(info.max_length || this.cacheLength, this.cacheLength);
    this.sequenceLength = info.sequence_length || this.maxLength;
  }

  tokenIds(text, withStart = false) {
    const ids = this.tokenizer.encode(text, { add_special_tokens: false }).ids;
    return withStart && this.addStartToken ? [this.startTokenId, ...ids] : ids;
  }

  // The text of ids, start and stop tokens left out (LiteRTModel.text).
  text(ids) {
    const shown = ids.filter((i) => i !== this.startTokenId && !this.stopTokenIds.has(i));
    return this.tokenizer.decode(shown, { skip_special_tokens: false });
  }

  promptTokenLimit(maxLength) {
    return Math.max(1, Math.min(this.sequenceLength, maxLength - 1));
  }

  effectiveMaxLength(maxLength) {
    if (maxLength === null || maxLength === undefined) return this.maxLength;
    return Math.min(maxLength, this.cacheLength);
  }

  freshCaches() {
    const caches = {};
    for (const [name, shape] of Object.entries(this.cacheShapes)) {
      const size = shape.reduce((a, b) => a * b, 1);
      caches[name] = new Tensor(new Float32Array(size), shape);
    }
    return caches;
  }

  // One call of a signature with `tokens` (at most its length) at `position`: its logits
  // (decode) or null; the caches move on to the call's outputs.
  async call(runner, length, tokens, position) {
    const count = tokens.length;
    const ids = new Int32Array(length);
    ids.set(tokens);
    const positions = new Int32Array(length);
    for (let i = 0; i < count; i++) positions[i] = position + i;
    const S = this.cacheLength;
    const mask = new Float32Array(length * S).fill(this.hidden);
    for (let t = 0; t < count; t++) mask.fill(0, t * S, t * S + position + t + 1);
    const inputs = {
      tokens: new Tensor(ids, [1, length]),
      input_pos: new Tensor(positions, [length]),
      mask: new Tensor(mask, [1, 1, length, S]),
      ...this.caches,
    };
    const outputs = await runner.run(inputs);
    for (const name of ["tokens", "input_pos", "mask"]) inputs[name].delete();
    let logits = null;
    for (const [name, tensor] of Object.entries(outputs)) {
      if (name in this.caches) {
        this.caches[name].delete();
        this.caches[name] = tensor;
      } else if (name === "logits" && length === 1) {
        logits = tensor.toTypedArray().slice();
        tensor.delete();
      } else tensor.delete();
    }
    return logits;
  }

  // Continue `prompt`; onText(text) receives the whole text so far whenever it grows by text
  // that can no longer change (an incomplete character at the end waits). Returns
  // {text, ids, givenTokens, promptTokens, newTokens, timings} (givenTokens: the prompt's
  // tokens before the cut, promptTokens: those kept); timings in milliseconds.
  async generate(prompt, { maxLength = null, pick, onText = null } = {}) {
    const started = performance.now();
    maxLength = this.effectiveMaxLength(maxLength);
    let ids = this.tokenIds(prompt, true);
    if (!ids.length) throw new ModelError("the prompt is empty and this model has no start token");
    if (ids.length >= maxLength) throw new ContextFullError(ids.length, maxLength, this.cacheLength);
    const givenTokens = ids.length;
    ids = ids.slice(0, this.promptTokenLimit(maxLength));
    const promptTokens = ids.length;
    let emitted = "";
    const update = (text) => {
      if (text.length > emitted.length && text.startsWith(emitted)) {
        emitted = text;
        if (onText) onText(text);
      }
    };
    update(this.text(ids).replace(/\uFFFD+$/u, ""));
    this.caches = this.freshCaches();
    const prefillStarted = performance.now();
    let position = 0;
    const rest = ids.slice(0, -1);
    for (const [length, count] of prefillPlan(rest.length, this.prefillLengths, this.cacheLength)) {
      const chunk = rest.slice(position, position + count);
      if (length === 1 && !(1 in this.prefill)) {
        await this.call(this.compiled.signatures.decode, 1, chunk, position);
      } else await this.call(this.prefill[length], length, chunk, position);
      position += count;
    }
    const timings = { prefill_ms: performance.now() - prefillStarted, decode_step_ms: [] };
    let token = ids[ids.length - 1];
    position = ids.length - 1;
    while (ids.length < maxLength) {
      const stepStarted = performance.now();
      const logits = await this.call(this.compiled.signatures.decode, 1, [token], position);
      token = pick(logits);
      const stepEnded = performance.now();
      timings.decode_step_ms.push(stepEnded - stepStarted);
      if (timings.first_token_ms === undefined) timings.first_token_ms = stepEnded - started;
      if (this.stopTokenIds.has(token)) break;
      ids.push(token);
      position += 1;
      update(this.text(ids).replace(/\uFFFD+$/u, ""));
      await yieldToPage();
    }
    for (const tensor of Object.values(this.caches)) tensor.delete();
    this.caches = null;
    const text = this.text(ids);
    update(text);
    return { text, ids, givenTokens, promptTokens, newTokens: ids.length - promptTokens, timings };
  }
}
