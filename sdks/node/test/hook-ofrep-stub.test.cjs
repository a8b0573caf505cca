'use strict';
// AllotExposureHook in its OFREP form against a tiny Node HTTP stub of `POST /ofrep/v1/exposures`
// that checks the exact request shape of the exposure contract (/work/shared/… contract: method,
// path, bearer key, JSON body `{"context", "flags": [{"key", "variant"}]}` with at most 100 flags).
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { AllotExposureHook } = require('../index.js');

/** A stub that records every request and answers each flag `recorded: true` (or `status`). */
async function stub(status = 200) {
  const requests = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      requests.push({ method: req.method, url: req.url, headers: req.headers, body });
      if (status !== 200) {
        res.writeHead(status, { 'content-type': 'application/json' });
        return res.end('{"errorCode":"GENERAL","errorDetails":"stub"}');
      }
      const flags = JSON.parse(body).flags.map((f) => ({ key: f.key, recorded: true }));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ flags }));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}`, requests, close: () => new Promise((r) => server.close(r)) };
}

/** What the OpenFeature SDK passes to `after`. */
const use = (hook, context, flagKey, variant, extra = {}) =>
  hook.after({ context, flagKey }, { flagKey, variant, value: variant, reason: 'SPLIT', flagMetadata: {}, ...extra });

test('the hook sends the exposure contract exactly, batched per context, deduplicated per day', async () => {
  const s = await stub();
  let day = new Date('2026-03-01T12:00:00Z');
  const hook = new AllotExposureHook({ url: s.url + '/', apiKey: 'k-123', flushIntervalMs: 0, now: () => day });
  const u1 = { targetingKey: 'u1', country: 'SE' };
  use(hook, u1, 'ranking-v2', 'treatment');
  use(hook, u1, 'ranking-v2', 'treatment'); // the same day: once
  use(hook, u1, 'banner', 'red');
  use(hook, { targetingKey: 'u2' }, 'ranking-v2', 'control');
  // No variant (the code default), an error, or a variant allot says is not an assignment: nothing.
  hook.after({ context: u1, flagKey: 'off' }, { flagKey: 'off', value: 'x', reason: 'DEFAULT', flagMetadata: {} });
  use(hook, u1, 'err', 'a', { errorCode: 'GENERAL' });
  use(hook, u1, 'fv', 'control', { flagMetadata: { allotReason: 'NOT_ALLOCATED' } });
  assert.equal(hook.queuedExposures, 3);
  assert.equal(hook.deduplicatedExposures, 1);
  assert.equal(await hook.flush(), 3);
  assert.equal(s.requests.length, 2);
  for (const r of s.requests) {
    assert.equal(r.method, 'POST');
    assert.equal(r.url, '/ofrep/v1/exposures');
    assert.equal(r.headers.authorization, 'Bearer k-123');
    assert.match(r.headers['content-type'], /^application\/json/);
  }
  assert.deepEqual(JSON.parse(s.requests[0].body), {
    context: { targetingKey: 'u1', country: 'SE' },
    flags: [
      { key: 'ranking-v2', variant: 'treatment' },
      { key: 'banner', variant: 'red' },
    ],
  });
  assert.deepEqual(JSON.parse(s.requests[1].body), { context: { targetingKey: 'u2' }, flags: [{ key: 'ranking-v2', variant: 'control' }] });
  // Another UTC day is another exposure; the same day after a flush is still a repeat.
  use(hook, u1, 'ranking-v2', 'treatment');
  assert.equal(hook.queuedExposures, 0);
  day = new Date('2026-03-02T00:00:01Z');
  use(hook, u1, 'ranking-v2', 'treatment');
  assert.equal(hook.queuedExposures, 1);
  await hook.close();
  assert.equal(s.requests.length, 3);
  await s.close();
});

test('at most 100 flags per request', async () => {
  const s = await stub();
  const hook = new AllotExposureHook({ url: s.url, apiKey: 'k', flushIntervalMs: 0 });
  for (let i = 0; i < 250; i++) use(hook, { targetingKey: 'u1' }, `f${i}`, 'on');
  assert.equal(await hook.flush(), 250);
  assert.deepEqual(s.requests.map((r) => JSON.parse(r.body).flags.length), [100, 100, 50]);
  await s.close();
});

test('the queue is bounded: a server that is down keeps what fits and counts what it drops', async () => {
  const s = await stub(503);
  const hook = new AllotExposureHook({ url: s.url, apiKey: 'k', flushIntervalMs: 0, queueLimit: 10 });
  for (let i = 0; i < 15; i++) use(hook, { targetingKey: `u${i}` }, 'banner', 'red');
  assert.deepEqual([hook.queuedExposures, hook.droppedExposures], [10, 5]);
  await assert.rejects(hook.flush(), /answered 503/);
  // The unsent ones are queued again (first), newer ones past the bound dropped.
  assert.deepEqual([hook.queuedExposures, hook.droppedExposures], [10, 5]);
  use(hook, { targetingKey: 'u99' }, 'banner', 'red');
  assert.deepEqual([hook.queuedExposures, hook.droppedExposures], [10, 6]);
  await s.close();
  // Nothing listens: a connection error is a failure too, nothing is lost within the bound.
  await assert.rejects(hook.flush());
  assert.equal(hook.queuedExposures, 10);
});

test('a 404 (a server without the endpoint) is a failure, not a silent success', async () => {
  const s = await stub(404);
  const hook = new AllotExposureHook({ url: s.url, apiKey: 'k', flushIntervalMs: 0 });
  use(hook, { targetingKey: 'u1' }, 'banner', 'red');
  await assert.rejects(hook.flush(), /answered 404/);
  await s.close();
});

test('evaluation is never blocked: after() only queues', () => {
  const hook = new AllotExposureHook({ url: 'http://127.0.0.1:9', apiKey: 'k', flushIntervalMs: 0 });
  const t = use(hook, { targetingKey: 'u1' }, 'banner', 'red');
  assert.equal(t, undefined, 'after returns no promise');
  assert.equal(hook.queuedExposures, 1);
  assert.throws(() => new AllotExposureHook({}), /pass \{client\}/);
});

test('a request the server refuses for good (422) is dropped and counted, not retried forever', async () => {
  const s = await stub(422);
  const hook = new AllotExposureHook({ url: s.url, apiKey: 'k', flushIntervalMs: 0 });
  use(hook, { targetingKey: 'u1' }, 'banner', 'red');
  assert.equal(await hook.flush(), 0);
  assert.equal(hook.queuedExposures, 0);
  assert.equal(hook.droppedExposures, 1);
  await s.close();
});

test('a context that cannot be serialised is dropped and counted; dedup is per whole context', () => {
  const hook = new AllotExposureHook({ url: 'http://127.0.0.1:9', apiKey: 'k', flushIntervalMs: 0 });
  use(hook, { targetingKey: 'u1', n: 1n }, 'banner', 'red');
  assert.equal(hook.queuedExposures, 0);
  assert.equal(hook.droppedExposures, 1);
  // Two devices of one user: two units for a device experiment, two exposures.
  use(hook, { targetingKey: 'u1', device_id: 'd1' }, 'banner', 'red');
  use(hook, { targetingKey: 'u1', device_id: 'd2' }, 'banner', 'red');
  use(hook, { targetingKey: 'u1', device_id: 'd2' }, 'banner', 'red');
  assert.equal(hook.queuedExposures, 2);
  assert.equal(hook.deduplicatedExposures, 1);
});
