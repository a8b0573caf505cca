'use strict';
// The OpenFeature parts of @allot/sdk: `AllotProvider`, a provider for @openfeature/server-sdk that
// evaluates in process through a `Client`, and `AllotExposureHook`, a hook whose `after` stage
// logs one exposure per (unit, flag, variant, UTC day) when the application uses a flag, either
// through a `Client` (the Rust SDK's batching) or to `POST /ofrep/v1/exposures` (for the published
// OFREP provider). Neither needs @openfeature/server-sdk at run time: both are the plain objects
// its interfaces describe.

const { Client, _stickyFns: stickyFns } = require('./index.js');

/** allot's reasons for which a unit is in the experiment with the variant it was given. */
const ASSIGNING = new Set(['ASSIGNED', 'INCLUDED', 'STICKY']);

function typeOf(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'object';
  return typeof value;
}

class AllotProvider {
  metadata = { name: 'allot' };
  runsOn = 'server';
  hooks = [];
  #n;
  #sticky;

  /**
   * @param {Client} client a connected or offline client.
   * @param {{sticky?: {get(unitType: string, unit: string, experiment: string): string | null | undefined, knows?(unitType: string, unit: string): boolean}}} [options]
   */
  constructor(client, options = {}) {
    if (!(client instanceof Client)) throw new TypeError('AllotProvider: expected an @allot/sdk Client');
    this.client = client;
    this.#n = client._native;
    this.#sticky = options.sticky === undefined ? undefined : stickyFns(options.sticky);
  }

  resolveBooleanEvaluation(flagKey, defaultValue, context) {
    return this.#resolve(flagKey, defaultValue, context, 'boolean');
  }

  resolveStringEvaluation(flagKey, defaultValue, context) {
    return this.#resolve(flagKey, defaultValue, context, 'string');
  }

  resolveNumberEvaluation(flagKey, defaultValue, context) {
    return this.#resolve(flagKey, defaultValue, context, 'number');
  }

  resolveObjectEvaluation(flagKey, defaultValue, context) {
    return this.#resolve(flagKey, defaultValue, context, 'object');
  }

  async onClose() {
    await this.client.close();
  }

  #resolve(flagKey, defaultValue, context, type) {
    let f;
    try {
      const json = JSON.stringify(context ?? {});
      f = this.#sticky
        ? this.#n.evaluateOpenfeature(flagKey, json, this.#sticky[0], this.#sticky[1])
        : this.#n.evaluateOpenfeature(flagKey, json);
    } catch (e) {
      const code = /^context:/.test(String(e && e.message)) ? 'INVALID_CONTEXT' : 'GENERAL';
      return { value: defaultValue, reason: 'ERROR', errorCode: code, errorMessage: String(e && e.message) };
    }
    if (f.reason === null) {
      return { value: defaultValue, reason: 'ERROR', errorCode: 'FLAG_NOT_FOUND', errorMessage: `no experiment ${flagKey} is served` };
    }
    const flagMetadata = { allotReason: f.reason, experiment: flagKey, configVersion: f.version };
    if (f.unitType !== null) flagMetadata.unitType = f.unitType;
    if (f.variant !== null) flagMetadata.variant = f.variant;
    if (f.reason === 'MISSING_UNIT') {
      return {
        value: defaultValue,
        reason: 'ERROR',
        errorCode: 'TARGETING_KEY_MISSING',
        errorMessage: `the context has no targetingKey (nor the attribute of ${flagKey}'s unit type) to identify the unit`,
        flagMetadata,
      };
    }
    if (f.reason === 'STICKY_UNAVAILABLE') {
      return {
        value: defaultValue,
        reason: 'ERROR',
        errorCode: 'GENERAL',
        errorMessage: `${flagKey} is sticky and the unit's stored assignment is not known here: pass a sticky store`,
        flagMetadata,
      };
    }
    // A unit the experiment does not assign gets the application's code default, no variant.
    if (f.variant === null) return { value: defaultValue, reason: f.openfeatureReason, flagMetadata };
    if (typeOf(f.value) !== type) {
      return {
        value: defaultValue,
        reason: 'ERROR',
        errorCode: 'TYPE_MISMATCH',
        errorMessage: `${flagKey}'s variant ${f.variant} has a ${typeOf(f.value)} value, not a ${type}`,
        flagMetadata,
      };
    }
    return { value: f.value, variant: f.variant, reason: f.openfeatureReason, flagMetadata };
  }
}

/** The UTC day of a Date, `YYYY-MM-DD`. */
function utcDay(d) {
  return d.toISOString().slice(0, 10);
}

/** Flags per `POST /ofrep/v1/exposures` (the endpoint's limit). */
const FLAGS_PER_REQUEST = 100;

class AllotExposureHook {
  #client;
  #url;
  #headers;
  #fetch;
  #now;
  #queue = [];
  #queueLimit;
  #seen = new Set();
  #dedupLimit;
  #dropped = 0;
  #deduplicated = 0;
  #timer;
  #sending = null;

  /**
   * `{client}`: exposures through the Client's batching (with `AllotProvider`). `{url, apiKey}`:
   * exposures to `POST <url>/ofrep/v1/exposures` (with `@openfeature/ofrep-provider`), batched per
   * context, at most 100 flags a request, every `flushIntervalMs` (default 1000; 0: only on
   * `flush()`), at most `queueLimit` (default 10,000) waiting, deduplicated per (targetingKey,
   * flag, variant, UTC day) over the last `dedupLimit` (default 100,000) keys.
   */
  constructor(options = {}) {
    if (options.client !== undefined) {
      if (!(options.client instanceof Client)) throw new TypeError('AllotExposureHook: client must be an @allot/sdk Client');
      this.#client = options.client;
      return;
    }
    if (typeof options.url !== 'string' || typeof options.apiKey !== 'string') {
      throw new TypeError('AllotExposureHook: pass {client} (in-process provider) or {url, apiKey} (OFREP provider)');
    }
    this.#url = options.url.replace(/\/+$/, '') + '/ofrep/v1/exposures';
    this.#headers = { 'content-type': 'application/json', authorization: `Bearer ${options.apiKey}`, ...(options.headers ?? {}) };
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#now = options.now ?? (() => new Date());
    this.#queueLimit = options.queueLimit ?? 10_000;
    this.#dedupLimit = options.dedupLimit ?? 100_000;
    const every = options.flushIntervalMs ?? 1000;
    if (every > 0) {
      this.#timer = setInterval(() => this.flush().catch(() => {}), every);
      this.#timer.unref();
    }
  }

  /** OpenFeature's `after` stage: the application evaluated (uses) the flag. Never blocks. */
  after(hookContext, details) {
    if (details.errorCode || typeof details.variant !== 'string') return;
    // A variant that allot says is not an assignment (first-variant answers) is not an exposure.
    const allotReason = details.flagMetadata?.allotReason;
    if (typeof allotReason === 'string' && !ASSIGNING.has(allotReason)) return;
    const context = hookContext.context ?? {};
    if (this.#client) {
      const unit = this.#client.unitOf(details.flagKey, this.#client.openFeatureContext(context));
      if (unit !== null) this.#client.expose(unit, details.flagKey, details.variant);
      return;
    }
    // The whole context is the unit's identity here (an experiment may read another attribute
    // than targetingKey); one that cannot be serialised is dropped and counted, never queued.
    let text;
    try {
      text = JSON.stringify(context);
    } catch {
      this.#dropped++;
      return;
    }
    if (this.#dedupLimit > 0) {
      const key = `${utcDay(this.#now())}|${text.length}:${text}${details.flagKey.length}:${details.flagKey}${details.variant}`;
      if (this.#seen.has(key)) {
        this.#deduplicated++;
        return;
      }
      if (this.#queue.length >= this.#queueLimit) {
        this.#dropped++;
        return;
      }
      if (this.#seen.size >= this.#dedupLimit) this.#seen.clear();
      this.#seen.add(key);
    } else if (this.#queue.length >= this.#queueLimit) {
      this.#dropped++;
      return;
    }
    this.#queue.push({ context, text, key: details.flagKey, variant: details.variant });
  }

  /**
   * Sends what is queued: one request per context and 100 flags. Resolves to the flags the server
   * recorded; rejects (keeping the unsent ones, within the queue's bound) when a request fails.
   */
  flush() {
    if (this.#client) return this.#client.flush();
    // One flush at a time; a caller that comes while one runs waits for it, then sends the rest.
    const run = async () => {
      const pending = this.#queue;
      this.#queue = [];
      const byContext = new Map();
      for (const x of pending) {
        let list = byContext.get(x.text);
        if (list === undefined) byContext.set(x.text, (list = []));
        list.push(x);
      }
      const batches = [];
      for (const list of byContext.values()) {
        for (let i = 0; i < list.length; i += FLAGS_PER_REQUEST) batches.push(list.slice(i, i + FLAGS_PER_REQUEST));
      }
      let recorded = 0;
      for (let b = 0; b < batches.length; b++) {
        const batch = batches[b];
        const body = JSON.stringify({ context: batch[0].context, flags: batch.map((x) => ({ key: x.key, variant: x.variant })) });
        let failure;
        try {
          const res = await this.#fetch(this.#url, { method: 'POST', headers: this.#headers, body });
          if (res.ok) {
            const answer = await res.json();
            recorded += (answer.flags ?? []).filter((f) => f.recorded === true).length;
          } else if (res.status === 400 || res.status === 413 || res.status === 422) {
            // The request itself is refused (bad context, too large, bad flags): sending it again
            // would fail again and hold back every batch behind it. Dropped and counted. (A 401,
            // 403 or 404 is the deployment's problem, not the batch's: kept for the next try.)
            this.#dropped += batch.length;
            await res.text();
          } else {
            failure = new Error(`POST ${this.#url} answered ${res.status}: ${await res.text()}`);
          }
        } catch (e) {
          failure = e;
        }
        if (failure) {
          this.#requeue(batches.slice(b).flat());
          throw failure;
        }
      }
      return recorded;
    };
    const p = (this.#sending ?? Promise.resolve()).then(run);
    this.#sending = p.catch(() => {});
    return p;
  }

  /** Puts unsent exposures back first; what no longer fits is dropped and counted. */
  #requeue(unsent) {
    const all = unsent.concat(this.#queue);
    const over = all.length - this.#queueLimit;
    if (over > 0) {
      all.length = this.#queueLimit;
      this.#dropped += over;
    }
    this.#queue = all;
  }

  /** Stops the timer and sends what is queued. */
  async close() {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#client) return;
    await this.flush();
  }

  /** Exposures dropped because the queue was full. */
  get droppedExposures() {
    return this.#client ? this.#client.droppedExposures : this.#dropped;
  }

  /** Exposures not queued because the same (unit, flag, variant, day) was. */
  get deduplicatedExposures() {
    return this.#client ? this.#client.deduplicatedExposures : this.#deduplicated;
  }

  /** Exposures waiting to be sent. */
  get queuedExposures() {
    return this.#client ? this.#client.queuedExposures : this.#queue.length;
  }
}

module.exports = { AllotProvider, AllotExposureHook };
