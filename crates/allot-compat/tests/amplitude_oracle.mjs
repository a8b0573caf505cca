// Amplitude's own evaluation engine (@amplitude/experiment-core, pinned in .ci/run) as an oracle
// for crates/allot-compat/tests/it/amplitude_differential.rs.
//
// Usage: node amplitude_oracle.mjs NODE_MODULES_DIR < cases.jsonl
//
// Each input line is {"flags": [...], "contexts": [...]}. For each, one output line:
// {"results": [per context: {flag key: {key, value, payload} of the variant it got}]} or,
// where the engine throws (a cycle, an invalid regular expression), {"error": "..."} in place
// of that context's results (a cycle throws before any context: {"error": ...} for the line).
//
// The flags are evaluated as the local-evaluation SDKs do: kept in an object by key (a later
// flag with the same key replaces the earlier one), sorted with the engine's topologicalSort,
// then evaluated in that order with EvaluationEngine.evaluate.
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import path from 'node:path';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node amplitude_oracle.mjs NODE_MODULES_DIR');
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(dir), 'oracle.js'));
const core = require('@amplitude/experiment-core');
const version = require('@amplitude/experiment-core/package.json').version;
const engine = new core.EvaluationEngine();

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
// One line out per line in, written at once: the caller may wait for it before sending more.
const say = (answer) => process.stdout.write(JSON.stringify(answer) + '\n');
say({ version });
for await (const line of lines) {
  if (!line.trim()) continue;
  const input = JSON.parse(line);
  const byKey = {};
  for (const flag of input.flags) byKey[flag.key] = flag;
  let sorted;
  try {
    sorted = core.topologicalSort(byKey);
  } catch (e) {
    say({ error: String(e && e.message) });
    continue;
  }
  const results = input.contexts.map((context) => {
    try {
      const got = engine.evaluate(context, sorted);
      const shown = {};
      for (const [key, variant] of Object.entries(got)) {
        shown[key] = { key: variant.key, value: variant.value, payload: variant.payload };
      }
      return shown;
    } catch (e) {
      return { error: String(e && e.message) };
    }
  });
  say({ results });
}
