'use strict';
// AllotExposureHook with the published @openfeature/ofrep-provider 0.1.3 against a real
// `allot serve`: exposures through `POST /ofrep/v1/exposures` (the exposure contract). Run by
// crates/allot-cli/tests/it/node_sdk.rs after serve.test.cjs set the configuration up; a server
// without the endpoint (404) fails this test.
const test = require('node:test');
const assert = require('node:assert/strict');
const { AllotExposureHook } = require('../index.js');

const URL_ = process.env.ALLOT_URL;
const KEY = process.env.ALLOT_KEY;
if (!URL_ || !KEY) throw new Error('ALLOT_URL and ALLOT_KEY must name a running allot serve and its admin key');

async function exposures(experiment) {
  const res = await fetch(`${URL_}/api/v1/exposures?experiment=${experiment}&limit=10000`, { headers: { authorization: `Bearer ${KEY}` } });
  assert.equal(res.status, 200);
  return (await res.json()).exposures;
}

test('the hook logs exposures of the OFREP provider through POST /ofrep/v1/exposures', async () => {
  const { OpenFeature } = require('@openfeature/server-sdk');
  const { OFREPProvider } = require('@openfeature/ofrep-provider');
  // 0.1.3 takes no answer without a value: allot's documented switch for it.
  const headers = [['Authorization', `Bearer ${KEY}`], ['X-Allot-Ofrep-Unassigned', 'first-variant']];
  await OpenFeature.setProviderAndWait('ofrep', new OFREPProvider({ baseUrl: URL_, headers }));
  const of = OpenFeature.getClient('ofrep');
  const hook = new AllotExposureHook({ url: URL_, apiKey: KEY, flushIntervalMs: 0 });
  of.addHooks(hook);
  const alice = await of.getStringDetails('banner', 'none', { targetingKey: 'alice' });
  assert.deepEqual([alice.value, alice.variant], ['red', 'treatment']);
  await of.getStringDetails('banner', 'none', { targetingKey: 'alice' });
  const o1 = await of.getStringDetails('banner', 'none', { targetingKey: 'ofrep-1' });
  assert.ok(o1.variant);
  // A unit outside `half` gets the first variant from this provider, but no exposure.
  let outside;
  const assigned = [];
  for (let u = 0; u < 50 && !outside; u++) {
    const d = await of.getStringDetails('half', 'none', { targetingKey: `ofrep-n${u}` });
    if (d.flagMetadata?.allotReason === 'NOT_ALLOCATED') outside = `ofrep-n${u}`;
    else assigned.push([`ofrep-n${u}`, d.variant]);
  }
  assert.ok(outside, 'some unit is outside `half`');
  assert.equal(hook.deduplicatedExposures, 1);
  assert.equal(await hook.flush(), 2 + assigned.length, 'the server recorded every one sent');
  const rows = (await exposures('banner')).filter((x) => x.unit === 'alice' || x.unit === 'ofrep-1');
  assert.deepEqual(rows.map((x) => [x.unit, x.variant]).sort(), [['alice', 'treatment'], ['ofrep-1', o1.variant]]);
  const half = (await exposures('half')).filter((x) => x.unit.startsWith('ofrep-n')).map((x) => [x.unit, x.variant]);
  assert.deepEqual(half.sort(), assigned.sort(), 'the assigned units, and not the one outside');
  await hook.close();
  await OpenFeature.close();
});
