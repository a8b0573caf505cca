// The console in a real browser: Playwright (npm playwright-core) driving Debian's chromium.
// Run by crates/allot-server/tests/it/browser.rs against a server it started:
//   node console.cjs EXPECTED.json
// EXPECTED.json: {base, keys: {admin, editor, reader, evaluator}, audit: {experiments, holdouts},
//                 space, stop, screenshots?}. Exits non-zero on the first failed check; prints
// "N passed, 0 failed" at the end.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const assert = require("node:assert/strict");
const { chromium } = require("playwright-core");

const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const base = cfg.base;
let passed = 0;
const check = (what, ok, detail) => {
  assert.ok(ok, `${what}${detail === undefined ? "" : ": " + detail}`);
  passed += 1;
  console.log(`ok - ${what}`);
};

/// A new context whose page records every console error, page error and failed request.
async function open(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.problems = [];
  page.on("console", (m) => { if (m.type() === "error") page.problems.push(`console: ${m.text()}`); });
  page.on("pageerror", (e) => page.problems.push(`page error: ${e.message}`));
  // A request the next navigation cancels (the icon, say) is not a failure.
  page.on("requestfailed", (r) => {
    const why = r.failure() ? r.failure().errorText : "";
    if (why !== "net::ERR_ABORTED") page.problems.push(`request failed: ${r.url()} (${why})`);
  });
  return { context, page };
}

/// Navigates and checks the page loaded with status `status` and no console error.
async function visit(page, url, status = 200) {
  page.problems.length = 0;
  const res = await page.goto(base + url);
  check(`${url} answers ${status}`, res.status() === status, res.status());
  check(`${url} has no console error`, page.problems.length === 0, page.problems.join("; "));
  return res;
}

async function signIn(page, key) {
  await page.goto(base + "/");
  check("/ leads to the sign-in form", page.url() === base + "/console/sign-in", page.url());
  await page.fill("#key", key);
  await Promise.all([page.waitForNavigation(), page.click("form.card button[type=submit]")]);
}

async function shot(page, name, fullPage = true) {
  if (!cfg.screenshots) return;
  fs.mkdirSync(cfg.screenshots, { recursive: true });
  await page.screenshot({ path: path.join(cfg.screenshots, `${name}.png`), fullPage });
  console.log(`screenshot ${name}.png`);
}

(async () => {
  const browser = await chromium.launch({ executablePath: cfg.chromium, args: ["--no-sandbox"] });
  try {
    // An evaluator key cannot sign in, and says why.
    {
      const { context, page } = await open(browser);
      await visit(page, "/console/sign-in");
      await shot(page, "sign-in");
      await signIn(page, cfg.keys.evaluator);
      check("an evaluator is refused with a clear message",
        (await page.textContent("#sign-in-error")).includes("An evaluator key can only evaluate flags"));
      check("an evaluator gets no session", (await context.cookies()).length === 0);
      await context.close();
    }

    // An editor: every page, the numbers, keyboard focus, CSRF, a stop through the preview.
    {
      const { context, page } = await open(browser);
      await signIn(page, cfg.keys.editor);
      check("signed in, on the overview", page.url() === base + "/console", page.url());
      const cookie = (await context.cookies()).find((c) => c.name === "allot_session");
      check("the session cookie is HttpOnly and SameSite=Strict",
        cookie && cookie.httpOnly && cookie.sameSite === "Strict" && cookie.path === "/console", JSON.stringify(cookie));
      await visit(page, "/console");
      await shot(page, "overview");
      await shot(page, "overview-top", false);

      // The experiments table: the audit's buckets exactly.
      const rows = await page.$$eval("#experiments-table tr[data-experiment]", (trs) =>
        trs.map((tr) => [tr.dataset.experiment, tr.querySelector("[data-buckets]").dataset.buckets]));
      for (const [id, a] of Object.entries(cfg.audit.experiments)) {
        const row = rows.find(([r]) => r === id);
        check(`experiment ${id}: the table shows the audit's ${a.buckets} buckets`, row && Number(row[1]) === a.buckets, row);
      }
      // Every scope's parts add up to the space; each part plus what it shares with earlier
      // parts is the audit's number (an experiment's reach, a holdout's buckets).
      const tables = await page.$$eval("section.scope table.numbers:first-of-type", (ts) =>
        ts.map((t) => [...t.querySelectorAll("tr[data-segment]")].map((tr) => {
          const n = tr.querySelector("[data-buckets]");
          return { kind: tr.dataset.kind, owner: tr.dataset.owner, buckets: Number(n.dataset.buckets), overlap: Number(n.dataset.overlap) };
        })));
      check("there are scopes drawn", tables.length >= 5, tables.length);
      for (const parts of tables) {
        const sum = parts.reduce((s, p) => s + p.buckets, 0);
        check(`a scope's parts add up to its space (${sum})`, sum === cfg.space.user || sum === cfg.space.device, sum);
        for (const p of parts) {
          if (p.kind === "seg-exp") {
            const want = cfg.audit.experiments[p.owner].reach_buckets;
            check(`${p.owner}: drawn ${p.buckets} + shared ${p.overlap} = its reach ${want}`, p.buckets + p.overlap === want);
          } else if (p.kind === "seg-holdout") {
            const want = cfg.audit.holdouts[p.owner].buckets;
            check(`holdout ${p.owner}: drawn ${p.buckets} + shared ${p.overlap} = ${want}`, p.buckets + p.overlap === want);
          }
        }
      }
      check("the stopped experiment's buckets are drawn free again",
        await page.$$eval(`tr[data-kind=seg-released][data-owner="${cfg.stopped}"]`, (r) => r.length) > 0);
      // Keyboard: a part of a bar takes focus and says what it is.
      await page.focus("svg.bar .seg");
      const detail = await page.textContent("section.scope .detail");
      check("a focused part of a bar says what it is", /running experiment|holdout|free/.test(detail), detail);
      check("the focused part's row is marked", await page.$$eval("tr.active", (r) => r.length) === 1);
      await page.evaluate(() => window.scrollTo(0, 0));
      await shot(page, "overview-focus", false);

      // Every experiment page loads.
      for (const id of Object.keys(cfg.experiments_all)) {
        await visit(page, `/console/experiments/${encodeURIComponent(id)}`);
      }
      await visit(page, `/console/experiments/${cfg.stop}`);
      await shot(page, "experiment");

      // A POST without the CSRF token is refused: the form with its token removed.
      await page.$eval("form[action$='/stop'] input[name=csrf]", (i) => i.remove());
      page.problems.length = 0;
      const [refused] = await Promise.all([page.waitForNavigation(), page.click("button[data-action=stop]")]);
      check("a POST without the CSRF token gets 403", refused.status() === 403, refused.status());
      check("and a page that says why", (await page.textContent("main")).includes("CSRF"));
      const version = Number((await page.request.get(base + "/readyz").then((r) => r.json())).version);

      // Stop through the preview.
      await visit(page, `/console/experiments/${cfg.stop}`);
      await Promise.all([page.waitForNavigation(), page.click("button[data-action=stop]")]);
      check("the preview shows the change", (await page.textContent("main")).includes(`stop experiment ${cfg.stop}`));
      check("the preview wrote nothing", (await page.request.get(base + "/readyz").then((r) => r.json())).version === version);
      await shot(page, "preview");
      await Promise.all([page.waitForNavigation(), page.click("form[action$='/confirm'] button[type=submit]")]);
      check("confirmed: the experiment is stopped", (await page.textContent("h1 .state")).trim() === "stopped");
      check("and the page says which version", (await page.textContent("main")).includes(`Committed as version ${version + 1}`));
      check("no console error after the change", page.problems.length === 0, page.problems.join("; "));

      // Sign out.
      await Promise.all([page.waitForNavigation(), page.click("form[action='/console/sign-out'] button")]);
      check("signed out: on the sign-in page", page.url() === base + "/console/sign-in", page.url());
      await page.goto(base + "/console");
      check("after sign-out the console asks to sign in again", page.url() === base + "/console/sign-in", page.url());
      await context.close();
    }

    // A reader sees no action, and an action POST is refused.
    {
      const { context, page } = await open(browser);
      await signIn(page, cfg.keys.reader);
      for (const id of Object.keys(cfg.experiments_all)) {
        await visit(page, `/console/experiments/${encodeURIComponent(id)}`);
        check(`a reader sees no action on ${id}`, (await page.$$("button[data-action], .actions")).length === 0);
      }
      await visit(page, "/console");
      check("a reader sees no action on the overview", (await page.$$("button[data-action]")).length === 0);
      const csrf = await page.$eval("input[name=csrf]", (i) => i.value);
      const status = await page.evaluate(async ([csrf, id]) => {
        const r = await fetch(`/console/experiments/${id}/stop`, {
          method: "POST",
          body: new URLSearchParams({ csrf, version: "1" }),
        });
        return r.status;
      }, [csrf, Object.keys(cfg.audit.experiments)[0]]);
      check("a reader's action POST (with a valid token) gets 403", status === 403, status);
      await context.close();
    }
  } finally {
    await browser.close();
  }
  console.log(`browser: ${passed} passed, 0 failed`);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
