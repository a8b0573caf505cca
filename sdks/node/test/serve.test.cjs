'use strict';
// The SDK against a real `allot serve` (started by crates/allot-cli/tests/it/node_sdk.rs, which
// passes ALLOT_URL and an admin key in ALLOT_KEY, and puts @openfeature/server-sdk in NODE_PATH).
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { Client, AllotProvider, AllotExposureHook } = require('../index.js');

const URL_ = process.env.ALLOT_URL;
const KEY = process.env.ALLOT_KEY;
if (!URL_ || !KEY) throw new Error('ALLOT_URL and ALLOT_KEY must name a running allot serve and its admin key');

const CONFIG = `
units:
  user: {attribute: user_id}
experiments:
  banner:
    unit: user
    share: 100%
    variants:
      control: {weight: 1, value: blue}
      treatment: {weight: 1, value: red}
    include: {alice: treatment}
    state: running
  half:
    unit: user
    share: 50%
    variants: {a: 1, b: 1}
    state: running
  onboarding:
    unit: user
    share: 100%
    variants: {control: 1, treatment: 1}
    sticky: true
    state: running
  dark-mode:
    unit: user
    share: 100%
    variants:
      on: {weight: 1, value: true}
    state: running
`;

async function api(method, path, body, headers = {}) {
  const res = await fetch(URL_ + path, {
    method,
    headers: { authorization: `Bearer ${KEY}`, ...headers },
    body,
  });
  const text = await res.text();
  return { status: res.status, text, json: () => JSON.parse(text) };
}

async function putConfig(yaml) {
  const r = await api('PUT', '/api/v1/config', yaml, { 'content-type': 'application/yaml', 'if-match': '*' });
  assert.equal(r.status, 200, r.text);
}

async function exposures(experiment) {
  const r = await api('GET', `/api/v1/exposures?experiment=${experiment}&limit=10000`);
  assert.equal(r.status, 200, r.text);
  return r.json().exposures;
}

/** Waits (bounded) until `done()` holds. */
async function until(what, done, ms = 20_000) {
  const end = Date.now() + ms;
  while (!(await done())) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

test.before(async () => {
  await putConfig(CONFIG);
});

test('evaluates in process as the server does', async () => {
  const c = await Client.connect(URL_, KEY);
  assert.ok(c.version >= 1);
  let compared = 0;
  for (let u = 0; u < 100; u++) {
    const ctx = { user_id: `u${u}` };
    const r = await api('POST', '/api/v1/evaluate', JSON.stringify({ context: ctx, experiments: ['banner', 'half'] }), {
      'content-type': 'application/json',
    });
    const want = r.json().assignments;
    for (const id of ['banner', 'half']) {
      const e = c.evaluate(id, ctx);
      assert.deepEqual([e.variant, e.reason], [want[id].variant, want[id].reason], `u${u} ${id}`);
      assert.equal(e.version, c.version);
      compared++;
    }
  }
  assert.equal(compared, 200);
  const alice = c.evaluate('banner', { user_id: 'alice' });
  assert.deepEqual([alice.variant, alice.value, alice.reason], ['treatment', 'red', 'INCLUDED']);
  const reasons = new Set();
  for (let u = 0; u < 100; u++) reasons.add(c.evaluate('half', { user_id: `u${u}` }).reason);
  assert.deepEqual([...reasons].sort(), ['ASSIGNED', 'NOT_ALLOCATED']);
  await c.close();
});

test('polling picks up a new configuration version', async () => {
  const c = await Client.connect(URL_, KEY, { pollIntervalMs: 50 });
  const before = c.version;
  await putConfig(CONFIG.replace('share: 50%', 'share: 60%'));
  await until('the poller to load the new version', () => c.version > before);
  assert.equal(c.evaluate('half', { user_id: 'u1' }).version, c.version);
  // After close() it polls no more.
  await c.close();
  const closed = c.version;
  await putConfig(CONFIG.replace('share: 50%', 'share: 70%'));
  const fresh = await Client.connect(URL_, KEY);
  assert.ok(fresh.version > closed);
  assert.equal(await c.refresh(), true, 'refresh still works by hand');
  await fresh.close();
});

test('the sticky store is honoured: never a variant that contradicts a stored one', async () => {
  const c = await Client.connect(URL_, KEY);
  // Without a store a sticky experiment cannot be decided here.
  const none = c.evaluate('onboarding', { user_id: 'u1' });
  assert.deepEqual([none.variant, none.reason], [null, 'STICKY_UNAVAILABLE']);
  // A store that knows the unit and has nothing stored: the computed variant.
  const empty = { get: () => null, knows: () => true };
  const other = (v) => (v === 'control' ? 'treatment' : 'control');
  const stored = new Map();
  for (let u = 0; u < 200; u++) {
    const fresh = c.evaluate('onboarding', { user_id: `u${u}` }, { sticky: empty });
    assert.equal(fresh.reason, 'ASSIGNED');
    stored.set(`u${u}`, other(fresh.variant)); // every stored variant contradicts the split
  }
  const calls = [];
  const store = {
    get(unitType, unit, experiment) {
      calls.push([unitType, unit, experiment]);
      return experiment === 'onboarding' ? stored.get(unit) : undefined;
    },
  };
  for (const [unit, want] of stored) {
    const e = c.evaluate('onboarding', { user_id: unit }, { sticky: store });
    assert.deepEqual([e.variant, e.reason], [want, 'STICKY'], unit);
  }
  assert.deepEqual(calls[0], ['user', 'u0', 'onboarding']);
  // A store that does not know the unit: STICKY_UNAVAILABLE, no variant.
  const unknown = c.evaluate('onboarding', { user_id: 'u1' }, { sticky: { get: () => null, knows: () => false } });
  assert.deepEqual([unknown.variant, unknown.reason], [null, 'STICKY_UNAVAILABLE']);
  // A store that throws: the evaluation throws, it does not answer as if nothing were stored.
  const broken = { get: () => { throw new Error('store down'); } };
  assert.throws(() => c.evaluate('onboarding', { user_id: 'u1' }, { sticky: broken }), /store down/);
  assert.throws(() => c.evaluate('onboarding', { user_id: 'u1' }, { sticky: { get: () => 7 } }), /expected a string/);
  await c.close();
});

test('exposures reach GET /api/v1/exposures, deduplicated', async () => {
  const c = await Client.connect(URL_, KEY);
  for (let i = 0; i < 3; i++) c.expose('x1', 'half', 'a');
  c.expose('x2', 'half', 'b');
  c.expose('x1', 'half', 'b');
  assert.deepEqual([c.queuedExposures, c.deduplicatedExposures], [3, 2]);
  assert.equal(await c.flush(), 3);
  const rows = (await exposures('half')).filter((x) => x.unit.startsWith('x'));
  assert.deepEqual(rows.map((x) => [x.unit, x.experiment, x.variant]).sort(), [
    ['x1', 'half', 'a'],
    ['x1', 'half', 'b'],
    ['x2', 'half', 'b'],
  ]);
  assert.equal(rows[0].day, new Date().toISOString().slice(0, 10));
  await c.close();
});

test('the dropped counter counts what a server that is down cannot take', async () => {
  // A stand-in for the server that serves its snapshot, then goes down.
  const snapshot = await api('GET', '/api/v1/snapshot');
  assert.equal(snapshot.status, 200);
  const stand = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', etag: '"x"' });
    res.end(snapshot.text);
  });
  await new Promise((r) => stand.listen(0, '127.0.0.1', r));
  const c = await Client.connect(`http://127.0.0.1:${stand.address().port}`, KEY, { queueLimit: 20, timeoutMs: 2000 });
  const closed = new Promise((r) => stand.close(r));
  stand.closeAllConnections();
  await closed;
  for (let u = 0; u < 30; u++) c.expose(`d${u}`, 'half', 'a');
  assert.deepEqual([c.queuedExposures, c.droppedExposures], [20, 10]);
  await assert.rejects(c.flush());
  assert.deepEqual([c.queuedExposures, c.droppedExposures], [20, 10], 'kept within the bound');
  c.expose('d99', 'half', 'a');
  assert.equal(c.droppedExposures, 11);
  // Evaluation goes on from the last snapshot.
  assert.equal(c.evaluate('banner', { user_id: 'alice' }).variant, 'treatment');
  await assert.rejects(c.close());
});

test('the OpenFeature provider evaluates in process and the hook logs exposures through the SDK', async () => {
  const { OpenFeature } = require('@openfeature/server-sdk');
  const c = await Client.connect(URL_, KEY);
  await OpenFeature.setProviderAndWait('allot', new AllotProvider(c, { sticky: { get: () => null, knows: () => true } }));
  const of = OpenFeature.getClient('allot');
  const hook = new AllotExposureHook({ client: c });
  of.addHooks(hook);
  const banner = await of.getStringDetails('banner', 'none', { targetingKey: 'alice' });
  assert.deepEqual([banner.value, banner.variant, banner.reason], ['red', 'treatment', 'TARGETING_MATCH']);
  assert.equal(banner.flagMetadata.allotReason, 'INCLUDED');
  assert.equal(banner.flagMetadata.unitType, 'user');
  const dark = await of.getBooleanDetails('dark-mode', false, { targetingKey: 'of1' });
  assert.deepEqual([dark.value, dark.variant, dark.reason], [true, 'on', 'SPLIT']);
  // A unit the experiment does not assign: the code default, no variant, the reason kept.
  let out;
  const assigned = [];
  for (let u = 0; u < 50 && !out; u++) {
    const d = await of.getStringDetails('half', 'code-default', { targetingKey: `of-n${u}` });
    if (d.flagMetadata.allotReason === 'NOT_ALLOCATED') out = [`of-n${u}`, d];
    else assigned.push([`of-n${u}`, d.variant]);
  }
  assert.ok(out, 'some unit is outside `half`');
  const [outside, d] = out;
  assert.deepEqual([d.value, d.variant, d.reason, d.errorCode], ['code-default', undefined, 'DEFAULT', undefined]);
  const mismatch = await of.getNumberDetails('banner', 7, { targetingKey: 'alice' });
  assert.deepEqual([mismatch.value, mismatch.errorCode], [7, 'TYPE_MISMATCH']);
  const missing = await of.getStringDetails('nope', 'fallback', { targetingKey: 'alice' });
  assert.deepEqual([missing.value, missing.errorCode], ['fallback', 'FLAG_NOT_FOUND']);
  const nokey = await of.getStringDetails('banner', 'fallback', {});
  assert.deepEqual([nokey.value, nokey.errorCode], ['fallback', 'TARGETING_KEY_MISSING']);
  const badkey = await of.getStringDetails('banner', 'fallback', { targetingKey: 7 });
  assert.equal(badkey.value, 'fallback');
  assert.ok(badkey.errorCode, 'an invalid targetingKey is an error');
  // Used twice today: one exposure. Unassigned and errors: none.
  await of.getStringDetails('banner', 'none', { targetingKey: 'alice' });
  assert.equal(await c.flush(), 2 + assigned.length);
  const rows = (await exposures('banner')).filter((x) => x.unit === 'alice');
  assert.deepEqual(rows.map((x) => [x.unit, x.variant]), [['alice', 'treatment']]);
  assert.deepEqual((await exposures('dark-mode')).map((x) => [x.unit, x.variant]), [['of1', 'on']]);
  const half = (await exposures('half')).filter((x) => x.unit.startsWith('of-n')).map((x) => [x.unit, x.variant]);
  assert.deepEqual(half.sort(), assigned.sort(), 'the assigned units, and not the one outside');
  assert.ok(!half.some(([u]) => u === outside));
  assert.ok(hook.deduplicatedExposures >= 1);
  await OpenFeature.close();
});
