'use strict';
// The golden suite of every SDK (spec/assign/README.md): an offline client over allot.state.json
// and resalted.state.json must give exactly expected.jsonl for each context of units.jsonl, and,
// under resalted.state.json, exactly the buckets of buckets-resalted.jsonl. Every mismatch is
// collected before the assertion; a mismatch fails the build.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { Client } = require('../index.js');

const spec = path.join(__dirname, '..', '..', '..', 'spec', 'assign');
const lines = (f) => fs.readFileSync(path.join(spec, f), 'utf8').split('\n').filter((l) => l.length > 0);

for (const state of ['allot.state.json', 'resalted.state.json']) {
  test(`golden assignments${state === 'resalted.state.json' ? ' and buckets' : ''} under ${state}`, () => {
    const c = Client.offline(fs.readFileSync(path.join(spec, state), 'utf8'));
    const units = lines('units.jsonl');
    const expected = lines('expected.jsonl');
    const buckets = lines('buckets-resalted.jsonl');
    assert.equal(units.length, 2000);
    assert.equal(expected.length, units.length);
    const failures = [];
    let cases = 0;
    units.forEach((line, n) => {
      const ctx = JSON.parse(line);
      const want = JSON.parse(expected[n]).assignments;
      for (const [id, w] of Object.entries(want)) {
        const e = c.evaluate(id, ctx);
        const got = { variant: e.variant, reason: e.reason };
        cases++;
        if (got.variant !== w.variant || got.reason !== w.reason) {
          failures.push(`line ${n + 1} ${id}: got ${JSON.stringify(got)}, want ${JSON.stringify(w)}`);
        }
      }
      if (state === 'resalted.state.json') {
        const got = JSON.stringify(Object.entries(c.buckets(ctx)).sort());
        const want = JSON.stringify(Object.entries(JSON.parse(buckets[n])).sort());
        cases++;
        if (got !== want) failures.push(`line ${n + 1} buckets: got ${got}, want ${want}`);
      }
    });
    assert.deepEqual(failures.slice(0, 20), [], `${failures.length} of ${cases} cases differ`);
    assert.ok(cases >= 16000, `${cases} cases`);
    // evaluateAll gives the same answers as evaluate, experiment by experiment.
    const ctx = JSON.parse(units[1]);
    const all = c.evaluateAll(ctx);
    assert.deepEqual(Object.keys(all), c.experiments());
    for (const id of c.experiments()) assert.deepEqual(all[id], c.evaluate(id, ctx));
    // The packed answer (two numbers across napi, names and values from the variant table) is
    // the full native answer, for every context, experiment and an unknown one.
    const full = [];
    for (const line of units.slice(0, 300)) {
      const ctx = JSON.parse(line);
      for (const id of [...c.experiments(), 'no-such-experiment']) {
        const want = c._native.evaluate(id, JSON.stringify(ctx));
        const got = c.evaluate(id, ctx);
        if (JSON.stringify(got) !== JSON.stringify({ variant: want.variant, value: want.value, reason: want.reason, version: want.version })) {
          full.push(`${id} ${line}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
        }
      }
    }
    assert.deepEqual(full.slice(0, 10), []);
  });
}

test('a served object value is the caller\'s own copy', () => {
  // spec/assign/allot.yaml serves objects ({suggestions: 5}): mutating one changes no later answer.
  const c = Client.offline(fs.readFileSync(path.join(spec, 'allot.state.json'), 'utf8'));
  let checked = 0;
  for (const id of c.experiments()) {
    for (let u = 0; u < 200; u++) {
      const e = c.evaluate(id, { user_id: `u${u}` });
      if (e.value !== null && typeof e.value === 'object') {
        const before = JSON.stringify(e.value);
        e.value.mutated = true;
        assert.equal(JSON.stringify(c.evaluate(id, { user_id: `u${u}` }).value), before);
        checked++;
      }
    }
  }
  assert.ok(checked > 0, 'an experiment of the golden state serves object values');
});

test('an offline client has no server', async () => {
  const c = Client.offline(fs.readFileSync(path.join(spec, 'allot.state.json'), 'utf8'));
  await assert.rejects(c.refresh(), /offline/);
  await assert.rejects(c.flush(), /offline/);
  await c.close();
});

test('bad input is a clear error, never a crash', () => {
  assert.throws(() => Client.offline('{"version": '), /bad snapshot/);
  const c = Client.offline(fs.readFileSync(path.join(spec, 'allot.state.json'), 'utf8'));
  assert.throws(() => c.evaluate('home-feed-us', null), /context: expected an object/);
  assert.throws(() => c.evaluate('home-feed-us', []), /context: expected an object/);
  assert.throws(() => c.evaluate('home-feed-us', {}, { sticky: {} }), /sticky: expected an object with a synchronous get/);
  assert.throws(() => new Client({}), /Client.connect/);
  const unknown = c.evaluate('nope', { user_id: 'u1' });
  assert.deepEqual([unknown.variant, unknown.value, unknown.reason], [null, null, null]);
  assert.equal(c.evaluate('home-feed-us', {}).reason, 'MISSING_UNIT');
});
