// Evaluates flags against an allot server with the published OpenFeature OFREP provider
// (npm @openfeature/ofrep-provider + @openfeature/server-sdk). Usage: node client.cjs BASE_URL KEY
// Prints one JSON object: flag -> {value, variant, reason, errorCode}.
const { OpenFeature } = require('@openfeature/server-sdk');
const { OFREPProvider } = require('@openfeature/ofrep-provider');

(async () => {
  const [baseUrl, key] = process.argv.slice(2);
  await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl, headers: [['Authorization', `Bearer ${key}`]] }));
  const client = OpenFeature.getClient();
  const pick = (d) => ({ value: d.value, variant: d.variant ?? null, reason: d.reason ?? null, errorCode: d.errorCode ?? null });
  const out = {
    banner_alice: pick(await client.getBooleanDetails('banner', false, { targetingKey: 'alice' })),
    color_u1: pick(await client.getStringDetails('color', 'none', { targetingKey: 'u1' })),
    shape_u1: pick(await client.getObjectDetails('shape', {}, { targetingKey: 'u1' })),
    later_u1: pick(await client.getStringDetails('later', 'none', { targetingKey: 'u1' })),
    nope_u1: pick(await client.getStringDetails('nope', 'fallback', { targetingKey: 'u1' })),
    color_nokey: pick(await client.getStringDetails('color', 'fallback', {})),
  };
  console.log(JSON.stringify(out));
  await OpenFeature.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
