// Amplitude's own engine (@amplitude/experiment-core) on the same work as allot-compat's
// `amplitude_evaluate` bench: every flag of the 30 configurations of
// spec/amplitude/generated-cases.json over their contexts, flags sorted once per configuration
// (as the local-evaluation SDKs do), `EvaluationEngine.evaluate` per context.
// Usage: node bench/amplitude-oracle.mjs NODE_MODULES_DIR [ROUNDS]
// Prints one line: {"engine": version, "flags": per round, "cpu_ns_per_flag", "wall_ns_per_flag"}.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const [dir, roundsArg] = process.argv.slice(2);
const require = createRequire(path.join(path.resolve(dir), 'bench.js'));
const core = require('@amplitude/experiment-core');
const version = require('@amplitude/experiment-core/package.json').version;
const here = path.dirname(fileURLToPath(import.meta.url));
const { cases } = JSON.parse(readFileSync(path.join(here, '..', 'spec', 'amplitude', 'generated-cases.json'), 'utf8'));
const engine = new core.EvaluationEngine();
const prepared = cases.map((c) => {
  const byKey = {};
  for (const f of c.flags) byKey[f.key] = f;
  return { sorted: core.topologicalSort(byKey), contexts: c.contexts };
});
const flagsPerRound = prepared.reduce((n, p) => n + p.sorted.length * p.contexts.length, 0);
const round = () => {
  let sink = 0;
  for (const p of prepared) for (const ctx of p.contexts) sink += Object.keys(engine.evaluate(ctx, p.sorted)).length;
  return sink;
};
for (let i = 0; i < 5; i++) round(); // warm-up: the JIT
const rounds = Number(roundsArg || 50);
const cpu0 = process.cpuUsage();
const t0 = process.hrtime.bigint();
for (let i = 0; i < rounds; i++) round();
const wall = Number(process.hrtime.bigint() - t0);
const cpu = process.cpuUsage(cpu0);
const flags = flagsPerRound * rounds;
console.log(JSON.stringify({
  engine: version, flags: flagsPerRound,
  cpu_ns_per_flag: Math.round(((cpu.user + cpu.system) * 1000) / flags * 10) / 10,
  wall_ns_per_flag: Math.round(wall / flags * 10) / 10,
}));
