// Type declarations of @allot/sdk (written by hand for index.js and openfeature.js; the native
// layer's generated declarations, native.d.ts, are an internal detail).

/** JSON values: what a variant's `value` can be. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** An evaluation context: attributes by name (the unit attributes, such as `user_id`, among them). */
export type Context = Record<string, JsonValue | undefined>;

/** allot's reasons. */
export type Reason =
  | 'INCLUDED'
  | 'ASSIGNED'
  | 'STICKY'
  | 'HOLDOUT'
  | 'NOT_ALLOCATED'
  | 'TARGETING_MISS'
  | 'PREREQUISITE_FAILED'
  | 'NOT_RUNNING'
  | 'PAUSED'
  | 'MISSING_UNIT'
  | 'STICKY_UNAVAILABLE';

/** One experiment's answer. */
export interface Evaluation {
  /** The variant, or null when the unit is not assigned one (or the experiment is unknown). */
  variant: string | null;
  /** The variant's value (its declared `value`, else its name), or null. */
  value: JsonValue | null;
  /** Why; null for an experiment the snapshot does not serve. */
  reason: Reason | null;
  /** The configuration version used (0 before the first snapshot). */
  version: number;
}

/**
 * The application's copy of the stored sticky assignments, read synchronously during evaluation
 * (allot_core::eval::StickyStore). A sticky experiment never answers a variant that contradicts
 * what `get` returns.
 */
export interface StickyStore {
  /** The stored variant of `unit` (of `unitType`) in `experiment`, or null/undefined if none. */
  get(unitType: string, unit: string, experiment: string): string | null | undefined;
  /**
   * Whether the store knows `unit`'s stored assignments (so that `get` answering nothing means
   * "none stored"). When false, sticky experiments answer STICKY_UNAVAILABLE. Default: true.
   */
  knows?(unitType: string, unit: string): boolean;
}

export interface ClientOptions {
  /** Poll `GET /api/v1/snapshot` (with ETag) and flush exposures this often; default: no polling. */
  pollIntervalMs?: number;
  /** PEM certificate(s) of a private CA to trust for `https://` servers (beside the Mozilla roots). */
  caCert?: string | Buffer;
  /** Exposures waiting to be sent at most (default 100,000); past it they are dropped and counted. */
  queueLimit?: number;
  /** (unit, experiment, variant, UTC day) keys remembered for deduplication (default 100,000; 0: off). */
  dedupLimit?: number;
  /** Timeout of each request, in milliseconds (default 10,000). */
  timeoutMs?: number;
}

export interface EvaluateOptions {
  /** The application's sticky store; without one, sticky experiments answer STICKY_UNAVAILABLE. */
  sticky?: StickyStore;
}

export interface EvaluateAllOptions extends EvaluateOptions {
  /** The experiments to evaluate (default: every experiment the snapshot serves). */
  experiments?: string[];
}

/** A client of one `allot serve`, evaluating in process. Share one per process. */
export declare class Client {
  private constructor();
  /** Connects with an `evaluator` key; resolves once the first snapshot is loaded. */
  static connect(url: string, key: string, options?: ClientOptions): Promise<Client>;
  /** A client of a state file or snapshot (text or parsed JSON) that never connects. */
  static offline(state: string | object, options?: ClientOptions): Client;
  /** One experiment for a context, synchronously and in process. */
  evaluate(experiment: string, context: Context, options?: EvaluateOptions): Evaluation;
  /** Several experiments (all by default) for one context. */
  evaluateAll(context: Context, options?: EvaluateAllOptions): Record<string, Evaluation>;
  /** The experiment ids the current snapshot serves. */
  experiments(): string[];
  /** The unit id `experiment`'s unit type reads from the context, or null. */
  unitOf(experiment: string, context: Context): string | null;
  /** The unit type of `experiment`, or null when it is not served. */
  unitTypeOf(experiment: string): string | null;
  /** An OpenFeature evaluation context as allot reads it: `targetingKey` → the unit ids it lacks. */
  openFeatureContext(context: Context): Context;
  /** The unit's bucket in each bucket space whose attribute the context carries. */
  buckets(context: Context): Record<string, number>;
  /** Queues an exposure: deduplicated per (unit, experiment, variant, UTC day), bounded, batched. */
  expose(unit: string, experiment: string, variant: string): void;
  /** Sends the queued exposures; resolves to how many were sent (rejects offline or on failure). */
  flush(): Promise<number>;
  /** Fetches the snapshot if it changed; resolves to true when a new version was loaded. */
  refresh(): Promise<boolean>;
  /** Stops polling and sends the queued exposures. */
  close(): Promise<void>;
  /** The configuration version in use. */
  readonly version: number;
  /** Exposures dropped because the queue was full, since the start. */
  readonly droppedExposures: number;
  /** Exposures not queued because the same (unit, experiment, variant, day) was. */
  readonly deduplicatedExposures: number;
  /** Exposures waiting to be sent. */
  readonly queuedExposures: number;
}

/** What the OpenFeature server SDK passes to a provider and a hook (structural, no import needed). */
type EvaluationContext = Record<string, unknown> & { targetingKey?: string };
interface ResolutionDetails<T> {
  value: T;
  variant?: string;
  reason?: string;
  errorCode?: string;
  errorMessage?: string;
  flagMetadata?: Record<string, string | number | boolean>;
}

/**
 * An OpenFeature provider for `@openfeature/server-sdk` that evaluates in process through a
 * Client. Flag key = experiment id; `targetingKey` is the unit id of every unit type whose
 * attribute the context lacks; a unit the experiment does not assign gets the code default
 * (no variant, reason DEFAULT or DISABLED); flagMetadata: allotReason, experiment, unitType,
 * variant, configVersion.
 */
export declare class AllotProvider {
  constructor(client: Client, options?: { sticky?: StickyStore });
  readonly metadata: { name: 'allot' };
  readonly runsOn: 'server';
  readonly client: Client;
  hooks: unknown[];
  resolveBooleanEvaluation(flagKey: string, defaultValue: boolean, context: EvaluationContext): ResolutionDetails<boolean>;
  resolveStringEvaluation(flagKey: string, defaultValue: string, context: EvaluationContext): ResolutionDetails<string>;
  resolveNumberEvaluation(flagKey: string, defaultValue: number, context: EvaluationContext): ResolutionDetails<number>;
  resolveObjectEvaluation<T extends JsonValue>(flagKey: string, defaultValue: T, context: EvaluationContext): ResolutionDetails<T>;
  onClose(): Promise<void>;
}

export type ExposureHookOptions =
  | {
      /** With AllotProvider: exposures through the Client's batching. */
      client: Client;
    }
  | {
      /** With @openfeature/ofrep-provider: the allot server that receives `POST /ofrep/v1/exposures`. */
      url: string;
      /** An evaluator (or editor, admin) key. */
      apiKey: string;
      /** Extra request headers. */
      headers?: Record<string, string>;
      /** Send every this many milliseconds (default 1000; 0: only on flush()). */
      flushIntervalMs?: number;
      /** Exposures waiting at most (default 10,000); past it dropped and counted. */
      queueLimit?: number;
      /** Dedup keys remembered (default 100,000; 0: off). */
      dedupLimit?: number;
      /** The clock that decides the UTC day (default: now). */
      now?: () => Date;
      /** The fetch to send with (default: globalThis.fetch). */
      fetch?: typeof fetch;
    };

/**
 * An OpenFeature hook whose `after` stage (the application used the flag) logs one exposure per
 * (unit, flag, variant, UTC day) for answers that carry a variant; it only queues, never blocks.
 */
export declare class AllotExposureHook {
  constructor(options: ExposureHookOptions);
  after(hookContext: { context?: EvaluationContext; flagKey?: string }, details: ResolutionDetails<unknown> & { flagKey: string }): void;
  /** Sends what is queued; resolves to how many exposures were sent (SDK) or recorded (OFREP). */
  flush(): Promise<number>;
  /** Stops the timer and sends what is queued. */
  close(): Promise<void>;
  readonly droppedExposures: number;
  readonly deduplicatedExposures: number;
  readonly queuedExposures: number;
}
