// The next token from a model's logits: greedy, temperature, top-k, top-p; seeded.
//
// The same steps and tie rules as llm2tflite/core/sampling.py (the CLI's sampler):
// 1. temperature divides the logits (0: greedy, the most likely token, lowest id on a tie);
// 2. top_k keeps the k most likely tokens (lower id first on ties);
// 3. top_p keeps the fewest most likely tokens whose probability (after 1 and 2) is >= p;
// 4. one token is drawn from what is left, renormalised. top_k = 1 is greedy too.
// Float64 arithmetic throughout, as numpy's. The random stream is this file's own (sfc32 seeded
// from the seed's 64 bits): a seed repeats exactly in the browser, but draws other tokens than
// numpy's generator with the same seed.

export class SamplerSettingsError extends Error {}

export function checkSettings({ temperature = 0, topK = null, topP = null, seed = null } = {}) {
  if (!(Number.isFinite(temperature) && temperature >= 0)) {
    throw new SamplerSettingsError(`temperature must be a finite number >= 0, got ${temperature}`);
  }
  if (topK !== null && !(Number.isInteger(topK) && topK >= 1)) {
    throw new SamplerSettingsError(`top_k must be an integer >= 1, got ${topK}`);
  }
  if (topP !== null && !(topP > 0 && topP <= 1)) {
    throw new SamplerSettingsError(`top_p must be in (0, 1], got ${topP}`);
  }
  if (seed !== null && !Number.isSafeInteger(seed)) {
    throw new SamplerSettingsError(`seed must be an integer, got ${seed}`);
  }
  return { temperature, topK, topP, seed };
}

export function isGreedy({ temperature, topK }) {
  return temperature === 0 || topK === 1;
}

// sfc32 (Chris Doty-Humphrey's small fast counting generator): 128 bits of state, passes
// PractRand; seeded through splitmix32 so that nearby seeds give unrelated streams.
function splitmix32(state) {
  return () => {
    state = (state + 0x9e3779b9) | 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export function seededRandom(seed) {
  const big = BigInt.asUintN(64, BigInt(seed));
  const low = splitmix32(Number(big & 0xffffffffn));
  const high = splitmix32(Number(big >> 32n) ^ 0x5bd1e995);
  let a = low();
  let b = high();
  let c = low() ^ high();
  let d = 1;
  const next32 = () => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return t >>> 0;
  };
  for (let i = 0; i < 12; i++) next32();
  // A double in [0, 1) from 53 random bits.
  return () => ((next32() >>> 5) * 67108864 + (next32() >>> 6)) / 9007199254740992;
}

function argmax(logits) {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

// Ids of the k largest scores, most likely first, lower id first on ties.
export function topKCandidates(scores, k) {
  const ids = Array.from(scores.keys());
  ids.sort((x, y) => scores[y] - scores[x] || x - y);
  return ids.slice(0, Math.min(k, ids.length));
}

function softmax(values) {
  let max = -Infinity;
  for (const v of values) if (v > max) max = v;
  const exp = values.map((v) => Math.exp(v - max));
  const sum = exp.reduce((s, v) => s + v, 0);
  return exp.map((v) => v / sum);
}

// Tokens top-p keeps of probabilities sorted in descending order (numpy's searchsorted 'left').
export function nucleusSize(sortedProbs, topP) {
  let cumulative = 0;
  for (let i = 0; i < sortedProbs.length; i++) {
    cumulative += sortedProbs[i];
    if (cumulative >= topP) return i + 1;
  }
  return sortedProbs.length;
}

// A picker for one generation: (logits) => id. Unseeded runs draw their seed from crypto.
export function startSampler(settings) {
  const { temperature, topK, topP } = settings;
  if (isGreedy(settings)) return (logits) => argmax(logits);
  let seed = settings.seed;
  if (seed === null) seed = crypto.getRandomValues(new Uint32Array(1))[0];
  const random = seededRandom(seed);
  return (logits) => {
    const scores = Array.from(logits, (v) => v / temperature);
    let candidates = null;
    if (topK !== null && topK < scores.length) candidates = topKCandidates(scores, topK);
    let probs;
    if (topP !== null && topP < 1) {
      if (candidates === null) {
        const all = softmax(scores);
        candidates = topKCandidates(scores, scores.length);
        probs = candidates.map((id) => all[id]);
      } else {
        probs = softmax(candidates.map((id) => scores[id]));
      }
      const kept = nucleusSize(probs, topP);
      candidates = candidates.slice(0, kept);
      const mass = probs.slice(0, kept).reduce((s, v) => s + v, 0);
      probs = probs.slice(0, kept).map((v) => v / mass);
    } else if (candidates !== null) {
      probs = softmax(candidates.map((id) => scores[id]));
    } else {
      probs = softmax(scores);
    }
    const u = random();
    let cumulative = 0;
    let choice = probs.length - 1;
    for (let i = 0; i < probs.length; i++) {
      cumulative += probs[i];
      if (u < cumulative) {
        choice = i;
        break;
      }
    }
    return candidates === null ? choice : candidates[choice];
  };
}
