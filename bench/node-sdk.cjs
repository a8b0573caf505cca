// The Node SDK's cost per evaluation, in process, beside an OFREP round trip on loopback from the
// same Node process (run by bench/node-sdk.sh, which starts `allot serve` with bench/lib.sh's 20
// experiments and builds the release addon). Prints one JSON line.
//   ALLOT_NODE_ADDON=… node bench/node-sdk.cjs URL KEY [ROUNDS]
'use strict';
const path = require('node:path');
const { Client } = require(path.join(__dirname, '..', 'sdks', 'node', 'index.js'));

const [url, key, roundsArg = '5'] = process.argv.slice(2);
const rounds = Number(roundsArg);
const UNITS = 10_000;
const countries = ['SE', 'US', 'DE'];
const contexts = Array.from({ length: UNITS }, (_, i) => ({ user_id: `u${i}`, country: countries[i % 3] }));

/** The best of `rounds` timings of `fn(n)`, in ns per operation (n operations a round). */
function best(n, fn) {
  fn(Math.min(n, 1000)); // warm-up
  let min = Infinity;
  for (let r = 0; r < rounds; r++) {
    const t = process.hrtime.bigint();
    fn(n);
    min = Math.min(min, Number(process.hrtime.bigint() - t) / n);
  }
  return min;
}

(async () => {
  const c = await Client.connect(url, key);
  const ids = c.experiments();
  if (ids.length !== 20) throw new Error(`expected the 20 experiments of bench/lib.sh, got ${ids.length}`);
  let sink = 0;
  const one = best(200_000, (n) => {
    for (let i = 0; i < n; i++) if (c.evaluate('home-2', contexts[i % UNITS]).variant !== null) sink++;
  });
  const twentyCalls = best(20_000, (n) => {
    for (let i = 0; i < n; i++) {
      const ctx = contexts[i % UNITS];
      for (let k = 0; k < 20; k++) if (c.evaluate(ids[k], ctx).variant !== null) sink++;
    }
  }) / 20;
  const twentyAll = best(20_000, (n) => {
    for (let i = 0; i < n; i++) {
      const all = c.evaluateAll(contexts[i % UNITS], { experiments: ids });
      if (all['home-2'].variant !== null) sink++;
    }
  }) / 20;
  // OFREP single-flag round trip on loopback: sequential requests from this process.
  const ofrep = async (n) => {
    const t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      const ctx = contexts[i % UNITS];
      const res = await fetch(`${url}/ofrep/v1/evaluate/flags/home-2`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ context: { targetingKey: ctx.user_id, country: ctx.country } }),
      });
      if (res.status !== 200) throw new Error(`OFREP answered ${res.status}: ${await res.text()}`);
      await res.json();
    }
    return Number(process.hrtime.bigint() - t) / n;
  };
  await ofrep(500);
  let roundTrip = Infinity;
  for (let r = 0; r < rounds; r++) roundTrip = Math.min(roundTrip, await ofrep(2000));
  await c.close();
  console.log(
    JSON.stringify({
      node_one_flag_ns: Math.round(one),
      node_20_flags_ns_per_flag: Math.round(twentyCalls),
      node_evaluate_all_20_ns_per_flag: Math.round(twentyAll),
      ofrep_round_trip_ns: Math.round(roundTrip),
      round_trip_over_one_flag: Number((roundTrip / one).toFixed(1)),
      sink,
    }),
  );
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
