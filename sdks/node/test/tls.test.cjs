'use strict';
// The SDK against `allot serve` over HTTPS with a private CA (started by
// crates/allot-cli/tests/it/node_sdk.rs, which passes ALLOT_TLS_URL, the CA's PEM in ALLOT_TLS_CA
// and an admin key in ALLOT_KEY): `caCert` makes the connection, and without it the server's
// certificate is not trusted.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Client } = require('../index.js');

const URL_ = process.env.ALLOT_TLS_URL;
const CA = process.env.ALLOT_TLS_CA;
const KEY = process.env.ALLOT_KEY;
if (!URL_ || !CA || !KEY) throw new Error('ALLOT_TLS_URL, ALLOT_TLS_CA and ALLOT_KEY must name a running allot serve over HTTPS');

test('an https server is reached with the CA given as caCert, and refused without it', async () => {
  const c = await Client.connect(URL_, KEY, { caCert: CA, pollIntervalMs: 0 });
  assert.equal(c.version, 1);
  const e = c.evaluate('banner', { user_id: 'u1' });
  assert.equal(e.reason, 'ASSIGNED');
  assert.ok(['control', 'treatment'].includes(e.variant));
  c.expose('u1', 'banner', e.variant);
  assert.equal(await c.flush(), 1, 'exposures are sent over HTTPS too');
  await c.close();
  const buffer = await Client.connect(URL_, KEY, { caCert: Buffer.from(CA), pollIntervalMs: 0 });
  assert.equal(buffer.version, 1, 'the PEM as a Buffer');
  await buffer.close();
  await assert.rejects(Client.connect(URL_, KEY, { pollIntervalMs: 0 }), /certificate|UnknownIssuer|tls|error sending request/i);
});
