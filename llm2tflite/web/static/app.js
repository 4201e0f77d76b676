// The demo page: loads page.json (written by llm2tflite/web/page.py), the tokenizer, the
// blocklist and the model, then runs the prompt from the form or from the URL
// (?prompt=...&max_length=...&temperature=...&top_k=...&top_p=...&seed=...&threads=...).
//
// Test interface: #output holds the text (prompt included, as the CLI prints it);
// data-done="true" when generation ended; data-error="<one line>" when it failed, was refused
// or the prompt leaves no room for a new token ("context full: ..."; data-done is set too);
// data-note for what the CLI prints as a note (prompt cut to the export's sequence_length,
// max_length capped at the context). window.llm2tflite exposes the tokenizer for the tokenizer
// parity test.

import { Tokenizer } from "@huggingface/tokenizers";
import { LiteRTModel, loadRuntime } from "./model.js";
import { RefusedError, SafeStream, SafetyFilter } from "./safety.js";
import { checkSettings, isGreedy, SamplerSettingsError, startSampler } from "./sampler.js";

// The CLI's temperature when top_k or top_p is given without one: sample the distribution as is.
const DEFAULT_SAMPLING_TEMPERATURE = 1.0;

const $ = (id) => document.getElementById(id);
const output = $("output");

class PageError extends Error {}

async function fetchOk(url, what) {
  let response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw new PageError(`${what} not found: ${url} (${error.message})`);
  }
  if (!response.ok) throw new PageError(`${what} not found: ${url} (HTTP ${response.status})`);
  return response;
}

function oneLine(error) {
  const text = error instanceof Error ? error.message : String(error);
  return text.split("\n")[0];
}

function status(text) {
  $("status").textContent = text;
}

function fail(error) {
  output.dataset.error = oneLine(error);
  output.dataset.done = "true";
  status(output.dataset.error);
}

function number(value, parse) {
  if (value === null || value === "") return null;
  const parsed = parse(value);
  if (Number.isNaN(parsed)) throw new SamplerSettingsError(`not a number: ${value}`);
  return parsed;
}

// The form's (or URL's) settings, defaulted as the CLI's flags are.
function settingsFrom(params) {
  const integer = (v) => (/^-?\d+$/.test(v.trim()) ? Number(v) : Number.NaN);
  const topK = number(params.get("top_k"), integer);
  const topP = number(params.get("top_p"), Number);
  let temperature = number(params.get("temperature"), Number);
  if (temperature === null) {
    temperature = topK !== null || topP !== null ? DEFAULT_SAMPLING_TEMPERATURE : 0;
  }
  return {
    prompt: params.get("prompt") ?? "",
    maxLength: number(params.get("max_length"), integer),
    sampler: checkSettings({ temperature, topK, topP, seed: number(params.get("seed"), integer) }),
  };
}

function fillForm(params) {
  for (const name of ["prompt", "max_length", "temperature", "top_k", "top_p", "seed"]) {
    if (params.get(name) !== null) $(name).value = params.get(name);
  }
}

function formParams() {
  const params = new URLSearchParams();
  for (const name of ["prompt", "max_length", "temperature", "top_k", "top_p", "seed"]) {
    if ($(name).value !== "") params.set(name, $(name).value);
  }
  return params;
}

async function load() {
  const page = await (await fetchOk("page.json", "page settings")).json();
  document.title = `${page.model} (${page.variant}) in LiteRT.js`;
  $("title").textContent = `${page.model}: ${page.variant}.tflite in the browser`;
  const [info, tokenizerJson, blocklist] = await Promise.all(
    [
      [page.info, "export info"],
      [page.tokenizer, "tokenizer"],
      [page.blocklist, "blocklist"],
    ].map(async ([url, what]) => (await fetchOk(url, what)).json()),
  );
  const tokenizer = new Tokenizer(tokenizerJson, { clean_up_tokenization_spaces: false });
  // Python's tokenizers decodes an empty list to "", tokenizers.js throws.
  const decode = tokenizer.decode.bind(tokenizer);
  tokenizer.decode = (ids, options) => (ids.length ? decode(ids, options) : "");
  await fetchOk(page.file, "model").then((r) => r.body?.cancel());
  const threads = Number(new URLSearchParams(location.search).get("threads") || page.threads || 1);
  const started = performance.now();
  await loadRuntime(new URL(page.wasm, location.href).href, threads);
  const model = await LiteRTModel.open(new URL(page.file, location.href).href, info, tokenizer, {
    threads,
  });
  const loadMs = performance.now() - started;
  window.llm2tflite = { model, encode: (text) => model.tokenIds(text) };
  return { page, model, safety: new SafetyFilter(blocklist.normalized), loadMs };
}

async function run(state, params) {
  delete output.dataset.done;
  delete output.dataset.error;
  delete output.dataset.note;
  output.textContent = "";
  $("stats").textContent = "";
  const { model, safety } = state;
  const { prompt, maxLength, sampler } = settingsFrom(params);
  if (!prompt.trim()) throw new PageError("the prompt is empty; give the text to continue");
  if (maxLength !== null && maxLength < 2) {
    throw new PageError("max_length must be at least 2 (start token + one new token)");
  }
  const blocked = safety.blockedWords(prompt);
  if (blocked.length) throw new RefusedError("prompt", blocked);
  const notes = [];
  if (maxLength !== null && maxLength > model.cacheLength) {
    notes.push(
      `max_length ${maxLength} exceeds the model's context of ${model.cacheLength} tokens; ` +
        `generating at most ${model.cacheLength}`,
    );
  }
  status(`generating (${isGreedy(sampler) ? "greedy" : "sampling"})...`);
  const stream = new SafeStream(safety, (text) => {
    output.textContent = text;
  });
  const generation = await model.generate(prompt, {
    maxLength,
    pick: startSampler(sampler),
    onText: (text) => stream.write(text.slice(stream.text.length)),
  });
  stream.close(generation.text);
  if (generation.promptTokens < generation.givenTokens) {
    notes.push(
      "the prompt was longer than the model's prompt limit and was cut to its first tokens " +
        `(kept ${generation.promptTokens} of ${generation.givenTokens}, start token included)`,
    );
  }
  if (notes.length) output.dataset.note = notes.join("; ");
  const steps = generation.timings.decode_step_ms;
  const decodeMs = steps.reduce((a, b) => a + b, 0);
  const figures = {
    new_tokens: generation.newTokens,
    first_token_ms: generation.timings.first_token_ms,
    prefill_ms: generation.timings.prefill_ms,
    decode_tokens_per_s: steps.length ? (steps.length * 1000) / decodeMs : null,
    decode_ms_per_token: steps.length ? decodeMs / steps.length : null,
    load_ms: state.loadMs,
  };
  output.dataset.stats = JSON.stringify(figures);
  const fixed = (v, digits = 1) => (v === null || v === undefined ? "-" : v.toFixed(digits));
  $("stats").textContent =
    `${figures.new_tokens} new tokens; first token ${fixed(figures.first_token_ms)} ms; ` +
    `${fixed(figures.decode_tokens_per_s)} tokens/s ` +
    `(${fixed(figures.decode_ms_per_token, 2)} ms/token); model load ${fixed(state.loadMs)} ms`;
  status(notes.length ? `done (note: ${notes.join("; ")})` : "done");
  output.dataset.done = "true";
}

async function main() {
  const params = new URLSearchParams(location.search);
  fillForm(params);
  let state;
  try {
    status("loading the model...");
    state = await load();
    status("ready");
  } catch (error) {
    fail(error);
    return;
  }
  const start = async (runParams) => {
    $("generate").disabled = true;
    try {
      await run(state, runParams);
    } catch (error) {
      fail(error);
    } finally {
      $("generate").disabled = false;
    }
  };
  $("form").addEventListener("submit", (event) => {
    event.preventDefault();
    const runParams = formParams();
    history.replaceState(null, "", `?${runParams}`);
    start(runParams);
  });
  $("generate").disabled = false;
  if (params.get("prompt") !== null) await start(params);
}

main();
