// The console in a real browser: Playwright (npm playwright-core) driving Debian's chromium, or
// Debian's Firefox ESR over WebDriver BiDi (EXPECTED.json's browser: chromium | firefox, executable).
// Run by crates/allot-server/tests/it/browser.rs against a server it started:
//   node console.cjs EXPECTED.json
// EXPECTED.json: {base, browser, executable, keys: {admin, editor, reader, evaluator}, audit: {experiments, holdouts},
//                 space, stop, screenshots?}. Exits non-zero on the first failed check; prints
// "N passed, 0 failed" at the end.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const assert = require("node:assert/strict");
const playwright = require("playwright-core");

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
    // A navigation that replaces a pending request aborts it (Chromium and Firefox name it so).
    if (why !== "net::ERR_ABORTED" && why !== "NS_BINDING_ABORTED") page.problems.push(`request failed: ${r.url()} (${why})`);
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
  // Chromium directly; Firefox (Debian's ESR) over WebDriver BiDi through the moz-firefox channel.
  const browser = cfg.browser === "firefox"
    ? await playwright.firefox.launch({ channel: "moz-firefox", executablePath: cfg.executable })
    : await playwright.chromium.launch({ executablePath: cfg.executable, args: ["--no-sandbox"] });
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
      // An experiment's results, reached from its page: the units per variant, and a comparison.
      await visit(page, `/console/experiments/${cfg.results.experiment}`);
      await Promise.all([page.waitForNavigation(), page.click("#results-link")]);
      const units = await page.$$eval("section.metric[data-metric=revenue] table:first-of-type tr[data-variant]", (trs) =>
        Object.fromEntries(trs.map((tr) => [tr.dataset.variant, Number(tr.children[1].textContent)])));
      check("the results page shows each variant's units", JSON.stringify(units) === JSON.stringify(cfg.results.units), JSON.stringify(units));
      check("the results page compares the variant with the control",
        (await page.$$eval("section.metric[data-metric=revenue] tr[data-variant=higher]", (r) => r.length)) === 2);
      check("the results page has the sample ratio check", (await page.textContent("#results-srm")).includes("Sample ratio check"));
      await shot(page, "results");
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

    // The whole lifecycle of a new experiment through the preview, as an editor: create →
    // preview → confirm → start → grow → a refused shrink (its rule) → forced with a reason →
    // stop → archive. Then an ETag conflict between two browser contexts.
    {
      const { context, page } = await open(browser);
      await signIn(page, cfg.keys.editor);
      const readyVersion = async () => Number((await page.request.get(base + "/readyz").then((r) => r.json())).version);
      const submit = async (selector, status = 200) => {
        page.problems.length = 0;
        const [res] = await Promise.all([page.waitForNavigation(), page.click(selector)]);
        check(`${selector} answers ${status}`, res.status() === status, `${res.status()} at ${page.url()}`);
        // (A page answered with an error status is itself logged as a failed load.)
        if (status === 200) check(`${selector}: no console error`, page.problems.length === 0, page.problems.join("; "));
        return res;
      };
      const id = "console-lifecycle";
      await visit(page, "/console/config");
      await shot(page, "config");
      await submit("a[data-action=new-experiments]");
      // The per-field form: one input per field, errors at the input, rows added by the script.
      await page.fill("#id", id);
      await page.check("input[name=surfaces][value=checkout]");
      await page.fill("#f-share", "150%");
      const rows = async () => page.$$eval("#rows-variants tbody tr", (r) => r.length);
      const rowsBefore = await rows();
      await page.click("button[data-add-row=rows-variants]");
      check("Add a row adds a variant row", (await rows()) === rowsBefore + 1, `${rowsBefore} → ${await rows()}`);
      const added = await page.$eval("#rows-variants tbody tr:last-child input", (e) => e.name);
      check("the added row has the next index", added === `variants[${rowsBefore}].name`, added);
      await submit("button[data-action=preview]", 422);
      check("a share over 100% is shown at the share", (await page.textContent("#f-share-errors")).trim().length > 0);
      check("the share keeps what was typed", (await page.inputValue("#f-share")) === "150%");
      check("the share is marked invalid", (await page.getAttribute("#f-share", "aria-invalid")) === "true");
      await shot(page, "form-error");
      await page.fill("#f-share", "5%");
      await page.fill("#f-variants-1--value", "{color: blue}");
      await page.fill("#f-criteria-0--attribute", "country");
      await page.fill("#f-criteria-0--value", "SE, NO");
      await shot(page, "form");
      let version = await readyVersion();
      await submit("button[data-action=preview]");
      check("the preview of a create names it", (await page.textContent("#changes")).includes(`experiment ${id}`));
      check("the preview of a create wrote nothing", (await readyVersion()) === version);
      await shot(page, "preview-create");
      await submit("#confirm button[type=submit]");
      check("created: a draft", (await page.textContent("h1 .state")).trim() === "draft");
      const made = await page.textContent("main");
      check("created with the form's value and targeting", made.includes("blue") && made.includes("country"), made.slice(0, 400));
      version = await readyVersion();

      await submit("button[data-action=start]");
      check("the preview of a start shows its changes", (await page.textContent("#changes")).includes(`experiment ${id}`));
      await submit("#confirm button[type=submit]");
      check("started: running", (await page.textContent("h1 .state")).trim() === "running");

      // Pause keeps the buckets and serves nobody; resume serves what it did (docs/config.md).
      const shareRunning = await page.textContent("#share");
      await submit("button[data-action=pause]");
      check("the preview of a pause lists it", (await page.textContent("#changes")).includes("pause"));
      check("a pause moves no unit", (await page.$$("#refusals")).length === 0);
      await submit("#confirm button[type=submit]");
      check("paused", (await page.textContent("h1 .state")).trim() === "paused");
      check("a paused experiment keeps its share", (await page.textContent("#share")) === shareRunning);
      await submit("button[data-action=resume]");
      await submit("#confirm button[type=submit]");
      check("resumed: running", (await page.textContent("h1 .state")).trim() === "running");

      await page.fill("#grow-share", "8%");
      await submit("button[data-action=grow]");
      check("the preview of a grow shows the buckets before and after", (await page.$$("#impact")).length === 1);
      check("a grow is not refused", (await page.$$("#refusals")).length === 0);
      await submit("#confirm button[type=submit]");
      check("grown: the share held is 8%", (await page.textContent("#share")).includes("8%"), await page.textContent("#share"));

      // Shrinking moves running units: refused, with its rule; forcing needs a reason.
      await page.fill("#grow-share", "3%");
      await submit("button[data-action=grow]");
      const rule = (await page.textContent("#refusals tbody tr td code")).trim();
      check("a shrink is refused with its rule", rule.length > 0, rule);
      await shot(page, "preview-refused");
      const before = await readyVersion();
      await submit("#confirm button[type=submit]", 409);
      check("confirming a refused change writes nothing", (await readyVersion()) === before);
      await page.check("input[name=force]");
      await submit("#confirm button[type=submit]", 422);
      check("forcing without a reason is asked for one", (await page.textContent("main")).includes("a forced change needs a reason"));
      await page.check("input[name=force]");
      await page.fill("#reason", "shrink for the browser test");
      await submit("#confirm button[type=submit]");
      check("forced: the history says so and why",
        (await page.textContent("main")).includes("forced: shrink for the browser test"));

      await submit("button[data-action=stop]");
      await submit("#confirm button[type=submit]");
      check("stopped", (await page.textContent("h1 .state")).trim() === "stopped");
      await submit("button[data-action=archive]");
      await submit("#confirm button[type=submit]");
      check("archived", (await page.textContent("h1 .state")).trim() === "archived");

      // An ETag conflict: this context previews a change, another commits one first.
      await visit(page, "/console/experiments/price-test");
      await submit("button[data-action=stop]");
      const other = await open(browser);
      await signIn(other.page, cfg.keys.admin);
      await other.page.goto(base + "/console/experiments/device-onboarding");
      await Promise.all([other.page.waitForNavigation(), other.page.click("button[data-action=start]")]);
      await Promise.all([other.page.waitForNavigation(), other.page.click("#confirm button[type=submit]")]);
      check("the other context started device-onboarding", (await other.page.textContent("h1 .state")).trim() === "running");
      await other.context.close();
      const stale = await readyVersion();
      await submit("#confirm button[type=submit]", 409);
      check("the conflict says someone changed it first", (await page.textContent("#conflict")).includes("Someone else changed the configuration first"));
      check("and shows what changed meanwhile", (await page.textContent("#since")).includes("device-onboarding"));
      check("a conflict writes nothing", (await readyVersion()) === stale);
      await shot(page, "conflict");
      await context.close();
    }

    // An admin: the keys page, the audit log and a diff, a version, the re-salt, import, forms.
    {
      const { context, page } = await open(browser);
      await signIn(page, cfg.keys.admin);
      await visit(page, "/console/keys");
      await page.fill("#name", "browser-pat");
      await page.selectOption("#role", "reader");
      await Promise.all([page.waitForNavigation(), page.click("button[data-action=create-key]")]);
      const secret = (await page.textContent("#secret")).trim();
      check("a new key's secret is shown once", secret.startsWith("allot_"), secret);
      const pat = await open(browser);
      await signIn(pat.page, secret);
      check("the new key signs in", pat.page.url() === base + "/console", pat.page.url());
      await page.goto(base + "/console/keys");
      const row = page.locator("#keys-table tr", { hasText: "browser-pat" });
      const used = (await row.locator("td[data-last-used]").textContent()).trim();
      check("its last use shows", /^\d{4}-\d\d-\d\dT/.test(used), used);
      await shot(page, "keys");
      await Promise.all([page.waitForNavigation(), row.locator("button[data-action=revoke]").click()]);
      check("revoked", (await page.textContent("main")).includes("revoked"));
      await pat.page.goto(base + "/console");
      check("revoking a key ends its session", pat.page.url() === base + "/console/sign-in", pat.page.url());
      await pat.context.close();

      await visit(page, "/console/audit");
      await page.fill("input[name=entity]", "console-lifecycle");
      await Promise.all([page.waitForNavigation(), page.click("#audit-filter button")]);
      const versions = await page.$$eval("#audit-table tr[data-version]", (trs) => trs.map((t) => t.dataset.version));
      check("the audit log filtered by entity: create, start, pause, resume, grow, shrink, stop, archive", versions.length === 8, versions);
      check("the forced change is marked", (await page.$$("#audit-table tr[data-forced]")).length === 1);
      await page.fill("input[name=actor]", "nobody-at-all");
      await Promise.all([page.waitForNavigation(), page.click("#audit-filter button")]);
      check("filtered by an unknown actor: nothing", (await page.$$("#no-entries")).length === 1);
      await visit(page, "/console/audit?entity=console-lifecycle");
      await shot(page, "audit");
      await Promise.all([page.waitForNavigation(), page.click(`#audit-table a[href="/console/audit/${versions[versions.length - 1]}"]`)]);
      check("an entry shows the diff", (await page.$$("#diff tr.ins")).length > 0);
      await shot(page, "audit-entry");
      await Promise.all([page.waitForNavigation(), page.click("a[href^='/console/versions/']:last-of-type")]);
      check("a version shows its configuration", (await page.textContent("#version-yaml")).includes("experiments:"));

      await visit(page, "/console/resalt");
      await page.selectOption("#unit", "user");
      await page.fill("#reason", "browser test");
      const v0 = Number((await page.request.get(base + "/readyz").then((r) => r.json())).version);
      await Promise.all([page.waitForNavigation(), page.click("button[data-action=preview]")]);
      check("the re-salt preview shows its scopes", (await page.$$("table.resalt")).length === 1);
      check("and wrote nothing", Number((await page.request.get(base + "/readyz").then((r) => r.json())).version) === v0);
      await shot(page, "resalt");
      await Promise.all([page.waitForNavigation(), page.click("#confirm button[type=submit]")]);
      check("re-salted: on its audit entry", page.url() === `${base}/console/audit/${v0 + 1}`, page.url());

      // Why is a unit in an experiment: the trace, step by step; the exposures section.
      await visit(page, "/console/experiments/home-feed-nordics");
      check("the experiment page has its exposures section", (await page.$$("#exposures, #exposures-none")).length === 1);
      await page.fill("#why-form input[name=unit]", "user-42");
      await page.fill("#why-form input[name=context]", "country=SE, age=30, app_version=9.0.0");
      await Promise.all([page.waitForNavigation(), page.click("#why-form button")]);
      check("the trace answers with an outcome", (await page.textContent("#outcome")).includes("gets"));
      check("the trace shows its steps", (await page.$$("#trace tr[data-step]")).length >= 3);
      await shot(page, "why");

      // Diagnostics: the exclusivity proof, pair by pair, and exposures by cause.
      await visit(page, "/console/diagnostics");
      check("the proof holds", (await page.textContent("#proof")).includes("Every exclusivity invariant holds"));
      const verdicts = await page.$$eval("#pairs tbody tr td:last-child", (tds) => tds.map((t) => t.textContent));
      check("the exclusive pairs are listed, none a violation", verdicts.length > 0 && verdicts.every((v) => !v.includes("VIOLATION")), verdicts);
      check("the causes are listed", (await page.$$("#causes tr[data-cause]")).length === 5);
      await shot(page, "diagnostics");

      // The timeline: every scope's bars and table rows agree; re-salts are marked; drafts planned.
      await visit(page, "/console/timeline?daily_user=50000&daily_device=20000&rate=0.1&mde=0.05");
      const tl = await page.$$eval("section.timeline", (ss) => ss.map((s) => [
        s.querySelectorAll("g.tl-bar").length, s.querySelectorAll("table tr[data-owner]").length]));
      check("there are timelines", tl.length >= 5, tl.length);
      for (const [bars, rows] of tl) check(`a timeline's bars and rows agree (${bars})`, bars === rows, [bars, rows]);
      check("the re-salt is marked", (await page.$$("g.tl-resalt")).length > 0);
      check("the drafts are planned", (await page.$$("g.tl-planned")).length > 0);
      check("the lifecycle experiment's bar ends at its stop", (await page.$$("g.tl-bar[data-owner=console-lifecycle][data-to]")).length > 0);
      await page.focus("g.tl-bar");
      await shot(page, "timeline");

      // Bandwidth: the planner on the live state.
      await visit(page, "/console/bandwidth?daily_user=50000&daily_device=20000&rate=0.1&mde=0.05&rho=0.5");
      check("bandwidth plans the draft", (await page.$$("#drafts tr[data-draft=checkout-redesign]")).length === 1);
      check("bandwidth has a schedule per scope", (await page.$$("#scopes tbody tr")).length > 0);
      await shot(page, "bandwidth");

      await visit(page, "/console/import");
      await Promise.all([page.waitForNavigation(), page.click("button[data-action=preview]")]);
      check("importing the current configuration changes nothing", (await page.textContent("main")).includes("None: the configuration would stay as it is."));
      await visit(page, "/console/edit/groups/pricing");
      check("a group's form says its slots are fixed", (await page.textContent("#form-note")).includes("fixed once it is created"));
      // Keyboard: the form's fields are reached with Tab and show their focus.
      check("a group's share is read-only and says why", (await page.getAttribute("#f-share", "readonly")) !== null
        && (await page.textContent("#f-share-fixed")).includes("slots-fixed"));
      await page.focus("#f-description");
      const outline = await page.$eval("#f-description", (e) => getComputedStyle(e).outlineStyle);
      check("a focused field shows its focus", outline !== "none", outline);
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
      for (const url of ["/console/config", "/console/audit"]) {
        await visit(page, url);
        check(`a reader sees no action on ${url}`, (await page.$$("[data-action]")).length === 0);
      }
      const csrf = await page.$eval("input[name=csrf]", (i) => i.value);
      const status = await page.evaluate(async ([csrf, id]) => {
        const r = await fetch(`/console/experiments/${id}/stop`, {
          method: "POST",
          body: new URLSearchParams({ csrf, version: "1" }),
        });
        return r.status;
      }, [csrf, Object.keys(cfg.audit.experiments)[0]]);
      check("a reader's action POST (with a valid token) gets 403", status === 403, status);
      for (const url of ["/console/keys", "/console/new/experiments", "/console/resalt"]) {
        const res = await page.goto(base + url);
        check(`a reader gets 403 from ${url}`, res.status() === 403, res.status());
      }
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
