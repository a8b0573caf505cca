// The published static-context web provider (npm @openfeature/ofrep-web-provider with
// @openfeature/web-sdk) against allot, from a page in real Chromium (Debian's, driven by
// playwright-core), served from another origin than allot's (so CORS is exercised).
// Usage: node web.cjs ALLOT_URL KEY NEW_CONFIG_FILE (NODE_PATH holds the packages and esbuild).
// The page evaluates flags for `u1`; the script then applies NEW_CONFIG_FILE through the admin
// API (If-Match "1"), and the page must get the new answer through allot's change events (the
// provider's polling is off). Prints one JSON object: {before, after, changed, requests}.
const http = require('http');
const fs = require('fs');
const path = require('path');
const os = require('os');
const esbuild = require('esbuild');
const { chromium } = require('playwright-core');

const [allot, key, newConfig] = process.argv.slice(2);

(async () => {
  // The two packages, bundled for the browser (nothing is loaded from the network).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'allot-web-'));
  const entry = path.join(dir, 'entry.js');
  fs.writeFileSync(entry, "window.OF = { ...require('@openfeature/web-sdk'), ...require('@openfeature/ofrep-web-provider') };\n");
  const bundled = await esbuild.build({
    entryPoints: [entry], bundle: true, write: false, format: 'iife', platform: 'browser',
    nodePaths: (process.env.NODE_PATH || '').split(':').filter(Boolean), logLevel: 'silent',
  });
  const bundle = bundled.outputFiles[0].text;
  const page = `<!doctype html><html><head><meta charset="utf-8"><title>allot OFREP web</title>
<script src="/bundle.js"></script></head><body><pre id="out"></pre></body></html>`;
  const server = http.createServer((req, res) => {
    if (req.url === '/bundle.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(bundle);
    } else {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(page);
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${server.address().port}`;
  const browser = await chromium.launch({ executablePath: process.env.ALLOT_CHROMIUM || '/usr/bin/chromium' });
  const errors = [];
  const requests = [];
  try {
    const p = await browser.newPage();
    p.on('pageerror', (e) => errors.push(String(e)));
    p.on('request', (r) => { if (r.url().startsWith(allot)) requests.push(`${r.method()} ${new URL(r.url()).pathname}`); });
    await p.goto(origin + '/');
    const before = await p.evaluate(async ({ allot, key }) => {
      const { OpenFeature, OFREPWebProvider } = window.OF;
      await OpenFeature.setContext({ targetingKey: 'u1' });
      window.changed = new Promise((resolve) => {
        OpenFeature.addHandler('PROVIDER_CONFIGURATION_CHANGED', (e) => resolve(e.flagsChanged || []));
      });
      await OpenFeature.setProviderAndWait(new OFREPWebProvider({
        baseUrl: allot, headers: [['Authorization', `Bearer ${key}`]], pollInterval: 0,
      }));
      const c = OpenFeature.getClient();
      const pick = (d) => ({ value: d.value, variant: d.variant ?? null, reason: d.reason ?? null, errorCode: d.errorCode ?? null,
        allotReason: (d.flagMetadata || {}).allotReason ?? null });
      window.pick = () => ({
        banner: pick(c.getBooleanDetails('banner', false)),
        color: pick(c.getStringDetails('color', 'none')),
        later: pick(c.getStringDetails('later', 'none')),
      });
      return window.pick();
    }, { allot, key });
    const put = await fetch(`${allot}/api/v1/config`, {
      method: 'PUT', body: fs.readFileSync(newConfig, 'utf8'),
      headers: { authorization: `Bearer ${key}`, 'if-match': '"1"', 'content-type': 'application/yaml' },
    });
    if (put.status !== 200) throw new Error(`PUT /api/v1/config: ${put.status} ${await put.text()}`);
    const changed = await p.evaluate(() => Promise.race([
      window.changed, new Promise((_, no) => setTimeout(() => no(new Error('no ConfigurationChanged within 30 s')), 30000)),
    ]));
    const after = await p.evaluate(() => window.pick());
    if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
    console.log(JSON.stringify({ before, after, changed, requests }));
  } finally {
    await browser.close();
    server.close();
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
