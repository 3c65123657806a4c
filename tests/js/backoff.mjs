// The client's backoff schedule and its declared types, under Node (run by tests/js_client.rs):
//   node tests/js/backoff.mjs
// Exits 0 when every check holds; an assertion's message names the one that failed.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as client from "../../clients/js/wspush.js";

const { backoffDelay, DEFAULT_INITIAL_DELAY, DEFAULT_MAX_DELAY } = client;

// The bounds: with random() at its extremes, 0 and just under the ceiling.
for (const [attempt, ceiling] of [[0, 1000], [1, 2000], [2, 4000], [4, 16000], [5, 30000], [6, 30000], [1000, 30000]]) {
  assert.equal(backoffDelay(attempt, {}, () => 0), 0, `attempt ${attempt}: the lowest wait is 0`);
  assert.equal(backoffDelay(attempt, {}, () => 0.999999), Math.floor(0.999999 * ceiling), `attempt ${attempt}: the ceiling is ${ceiling}`);
}
assert.equal(DEFAULT_INITIAL_DELAY, 1000);
assert.equal(DEFAULT_MAX_DELAY, 30000);
// Options: another start and cap.
assert.equal(backoffDelay(3, { initialDelay: 100, maxDelay: 500 }, () => 0.5), 250, "capped at 500, half of it");
assert.equal(backoffDelay(2, { initialDelay: 100, maxDelay: 500 }, () => 0.5), 200, "400 under the cap, half of it");

// With the real Math.random: every wait inside its bounds, the cap never passed, and the
// waits spread across the whole interval (each tenth of it gets some, none most).
for (const attempt of [0, 3, 10, 60]) {
  const ceiling = Math.min(DEFAULT_MAX_DELAY, DEFAULT_INITIAL_DELAY * 2 ** attempt);
  const tenths = new Array(10).fill(0);
  const samples = 10000;
  for (let i = 0; i < samples; i++) {
    const delay = backoffDelay(attempt);
    assert.ok(Number.isInteger(delay) && delay >= 0 && delay < ceiling, `attempt ${attempt}: ${delay} outside [0, ${ceiling})`);
    tenths[Math.floor((delay / ceiling) * 10)]++;
  }
  for (const [i, n] of tenths.entries()) {
    assert.ok(n > samples * 0.07 && n < samples * 0.13, `attempt ${attempt}: tenth ${i} of the interval got ${n} of ${samples}: ${tenths}`);
  }
}

// wspush.d.ts declares exactly what the module exports.
const declared = [...readFileSync(new URL("../../clients/js/wspush.d.ts", import.meta.url), "utf8")
  .matchAll(/^export declare (?:const|function|class) (\w+)/gm)].map((m) => m[1]).sort();
assert.deepEqual(declared, Object.keys(client).sort(), "wspush.d.ts and wspush.js export the same names");

console.log("backoff: every check passed");
