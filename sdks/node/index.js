'use strict';
// @allot/sdk: allot's in-process SDK for Node. The native addon (src/lib.rs, napi-rs) wraps the
// Rust SDK (crates/allot-sdk): snapshot polling with ETag, evaluation by allot-core, bounded and
// deduplicated exposure batching. This file gives it its JavaScript shape; openfeature.js adds
// the OpenFeature provider and the exposure hook.

const path = require('node:path');

/** The addon: `ALLOT_NODE_ADDON` (a built `.so`/`.node`, as the tests use) or `allot.node` here. */
function loadNative() {
  const file = process.env.ALLOT_NODE_ADDON || path.join(__dirname, 'allot.node');
  const m = { exports: {} };
  try {
    process.dlopen(m, file);
  } catch (e) {
    e.message = `@allot/sdk: cannot load the native addon ${file} (build it with \`npm run build\` in sdks/node): ${e.message}`;
    throw e;
  }
  return m.exports;
}

const native = loadNative();

/** A sticky store's functions, bound once per store object. */
const bound = new WeakMap();
function stickyFns(store) {
  let fns = bound.get(store);
  if (fns === undefined) {
    if (store === null || typeof store !== 'object' || typeof store.get !== 'function') {
      throw new TypeError('sticky: expected an object with a synchronous get(unitType, unit, experiment)');
    }
    fns = [
      (unitType, unit, experiment) => {
        const v = store.get(unitType, unit, experiment);
        if (v !== undefined && v !== null && typeof v !== 'string') {
          throw new TypeError(`sticky.get(${unitType}, ${unit}, ${experiment}): expected a string, null or undefined, got ${typeof v}`);
        }
        return v ?? null;
      },
      typeof store.knows === 'function' ? (unitType, unit) => store.knows(unitType, unit) === true : undefined,
    ];
    bound.set(store, fns);
  }
  return fns;
}

function nativeOptions(o = {}) {
  return {
    pollIntervalMs: o.pollIntervalMs,
    caCert: o.caCert === undefined ? undefined : String(o.caCert),
    queueLimit: o.queueLimit,
    dedupLimit: o.dedupLimit,
    timeoutMs: o.timeoutMs,
  };
}

function contextJson(context) {
  if (context === null || typeof context !== 'object' || Array.isArray(context)) {
    throw new TypeError('context: expected an object');
  }
  return JSON.stringify(context);
}

// Packed answers (src/lib.rs `pack`): version * 2^21 + (variant + 1) * 16 + reason.
const REASONS = native.reasonNames();
const VERSION_UNIT = 2 ** 21;
const UNKNOWN = 15;

/** A served value for the caller: objects and arrays are copied, so the cache stays intact. */
function served(value) {
  return value !== null && typeof value === 'object' ? structuredClone(value) : value;
}

class Client {
  #n;
  #closed = false;
  /** The variants and values of one version (`variantTable`), read when a packed answer needs them. */
  #table = null;

  /** Use `Client.connect` or `Client.offline`. */
  constructor(nativeClient) {
    if (!(nativeClient instanceof native.NativeClient)) {
      throw new TypeError('use Client.connect(url, key, options) or Client.offline(state, options)');
    }
    this.#n = nativeClient;
  }

  /** Connects to `allot serve` at `url` with an evaluator key; resolves once the first snapshot is in. */
  static async connect(url, key, options = {}) {
    return new Client(await native.connect(String(url), String(key), nativeOptions(options)));
  }

  /** A client of a state file (`allot.state.json`) or snapshot, as text or parsed: never connects. */
  static offline(state, options = {}) {
    const text = typeof state === 'string' ? state : JSON.stringify(state);
    return new Client(native.NativeClient.offline(text, nativeOptions(options)));
  }

  /** `{variant, value, reason, version}` for one experiment, in process. */
  evaluate(experiment, context, options) {
    const sticky = options?.sticky;
    if (sticky === undefined) {
      const json = contextJson(context);
      return this.#unpack(experiment, this.#n.evaluatePacked(experiment, json)) ?? this.#n.evaluate(experiment, json);
    }
    const [get, knows] = stickyFns(sticky);
    return this.#n.evaluate(experiment, contextJson(context), get, knows);
  }

  /** `{experimentId: evaluation}` for the given experiments (every one served when omitted), one context. */
  evaluateAll(context, options) {
    const ids = options?.experiments ?? this.#n.experiments();
    const sticky = options?.sticky;
    const json = contextJson(context);
    const r = {};
    if (sticky === undefined) {
      const packed = this.#n.evaluateManyPacked(ids, json);
      for (let i = 0; i < ids.length; i++) {
        const e = this.#unpack(ids[i], packed[i]);
        if (e === null) return this.#many(ids, json, undefined);
        r[ids[i]] = e;
      }
      return r;
    }
    return this.#many(ids, json, sticky);
  }

  #many(ids, json, sticky) {
    const out = sticky === undefined ? this.#n.evaluateMany(ids, json) : this.#n.evaluateMany(ids, json, ...stickyFns(sticky));
    const r = {};
    for (let i = 0; i < ids.length; i++) r[ids[i]] = out[i];
    return r;
  }

  /** A packed answer as `{variant, value, reason, version}`; null when the table of its version cannot be had (the caller then asks for the full answer). */
  #unpack(experiment, p) {
    if (p < 0) return null;
    const version = Math.floor(p / VERSION_UNIT);
    const code = p - version * VERSION_UNIT;
    const reason = code % 16;
    const v = (code - reason) / 16 - 1;
    if (reason === UNKNOWN) return { variant: null, value: null, reason: null, version };
    if (v < 0) return { variant: null, value: null, reason: REASONS[reason], version };
    let t = this.#table;
    if (t === null || t.version !== version) {
      t = JSON.parse(this.#n.variantTable());
      this.#table = t;
      // The poller loaded another version between the two calls: ask again in full.
      if (t.version !== version) return null;
    }
    const row = t.experiments[experiment]?.[v];
    if (row === undefined) return null;
    return { variant: row[0], value: served(row[1]), reason: REASONS[reason], version };
  }

  /** The experiment ids the current snapshot serves. */
  experiments() {
    return this.#n.experiments();
  }

  /** The unit id `experiment`'s unit type reads from the (allot) context, or null. */
  unitOf(experiment, context) {
    return this.#n.unitOf(experiment, contextJson(context)) ?? null;
  }

  /** The unit type of `experiment`, or null when not served. */
  unitTypeOf(experiment) {
    return this.#n.unitTypeOf(experiment) ?? null;
  }

  /** An OpenFeature evaluation context as an allot context (`targetingKey` → the unit ids it lacks). */
  openFeatureContext(context) {
    return JSON.parse(this.#n.openfeatureContext(contextJson(context)));
  }

  /** `{space: bucket}` for each bucket space whose attribute the context carries. */
  buckets(context) {
    return this.#n.buckets(contextJson(context));
  }

  /** Queues an exposure: batched, deduplicated per (unit, experiment, variant, UTC day), bounded. */
  expose(unit, experiment, variant) {
    this.#n.expose(String(unit), String(experiment), String(variant));
  }

  /** Sends the queued exposures; resolves to how many were sent. */
  flush() {
    return this.#n.flush();
  }

  /** Fetches the snapshot if it changed; resolves to true when a new version was loaded. */
  refresh() {
    return this.#n.refresh();
  }

  /** Stops polling and sends what is queued (an offline client has nothing to send). */
  async close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#n.stopPolling();
    try {
      await this.#n.flush();
    } catch (e) {
      if (!/offline/.test(String(e && e.message))) throw e;
    }
  }

  /** The configuration version in use (0 before the first snapshot). */
  get version() {
    return this.#n.version;
  }

  /** Exposures dropped because the queue was full, since the start. */
  get droppedExposures() {
    return this.#n.droppedExposures;
  }

  /** Exposures not queued because the same (unit, experiment, variant, UTC day) was. */
  get deduplicatedExposures() {
    return this.#n.deduplicatedExposures;
  }

  /** Exposures waiting to be sent. */
  get queuedExposures() {
    return this.#n.queuedExposures;
  }

  /** @internal the native client (the OpenFeature provider evaluates through it). */
  get _native() {
    return this.#n;
  }
}

module.exports = { Client };
// For openfeature.js: one binding of a sticky store object.
Object.defineProperty(module.exports, '_stickyFns', { value: stickyFns });
// The OpenFeature parts load @openfeature/server-sdk only when asked for.
Object.defineProperty(module.exports, 'AllotProvider', { enumerable: true, get: () => require('./openfeature.js').AllotProvider });
Object.defineProperty(module.exports, 'AllotExposureHook', { enumerable: true, get: () => require('./openfeature.js').AllotExposureHook });
