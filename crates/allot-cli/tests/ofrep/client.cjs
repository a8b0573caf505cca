// Evaluates flags against an allot server with the published OpenFeature OFREP provider
// (npm @openfeature/ofrep-provider + @openfeature/server-sdk).
// Usage: node client.cjs BASE_URL KEY [MODE]
//   MODE `flags` (default): prints one JSON object: flag -> {value, variant, reason, errorCode};
//   MODE `first-variant`: the same, with the header X-Allot-Ofrep-Unassigned: first-variant;
//   MODE `burst`: evaluates one flag 3 times at once and prints the 3 results (for --rate-limit).
const { OpenFeature } = require('@openfeature/server-sdk');
const { OFREPProvider } = require('@openfeature/ofrep-provider');

(async () => {
  const [baseUrl, key, mode = 'flags'] = process.argv.slice(2);
  const headers = [['Authorization', `Bearer ${key}`]];
  if (mode === 'first-variant') headers.push(['X-Allot-Ofrep-Unassigned', 'first-variant']);
  await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl, headers }));
  const client = OpenFeature.getClient();
  const pick = (d) => ({ value: d.value, variant: d.variant ?? null, reason: d.reason ?? null, errorCode: d.errorCode ?? null });
  let out;
  if (mode === 'burst') {
    out = [];
    for (let i = 0; i < 3; i++) out.push(pick(await client.getStringDetails('color', 'none', { targetingKey: 'u1' })));
  } else {
    out = {
      banner_alice: pick(await client.getBooleanDetails('banner', false, { targetingKey: 'alice' })),
      color_u1: pick(await client.getStringDetails('color', 'none', { targetingKey: 'u1' })),
      shape_u1: pick(await client.getObjectDetails('shape', {}, { targetingKey: 'u1' })),
      later_u1: pick(await client.getStringDetails('later', 'none', { targetingKey: 'u1' })),
      nope_u1: pick(await client.getStringDetails('nope', 'fallback', { targetingKey: 'u1' })),
      color_nokey: pick(await client.getStringDetails('color', 'fallback', {})),
    };
  }
  console.log(JSON.stringify(out));
  await OpenFeature.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
