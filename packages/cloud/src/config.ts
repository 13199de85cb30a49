/** A clock in milliseconds since the epoch; injected so that expiry can be tested without waiting. */
export type Clock = () => number;

/** Limits on the token endpoint and the API, all per source IP. @see spec/cloud-api.md §8 */
export interface RateLimitConfig {
  /** Requests to any route per window. @default 10000 */
  readonly apiMax: number;
  /** Requests to `POST /oauth/token` per window. @default 100 */
  readonly tokenMax: number;
  /** Requests to `POST /v1/users` and `DELETE /v1/access_tokens/:token` per window. @default 100 */
  readonly sensitiveMax: number;
  /** Window length in milliseconds. @default 300000 (5 minutes) */
  readonly windowMs: number;
  /** Consecutive failed token requests from one IP before it is blocked. @default 10 */
  readonly lockoutFailures: number;
  /** How long a blocked IP stays blocked, in milliseconds. @default 1800000 (30 minutes) */
  readonly lockoutMs: number;
}

/**
 * Limits on HTTP connections, so that no request is held forever and no client holds every socket.
 * See docs/security.md for how they answer.
 */
export interface HttpLimitsConfig {
  /** Time to receive a whole request (headers and body); then 408 and the connection closes. @default 30000 */
  readonly requestTimeoutMs: number;
  /** Time to receive a request's headers. @default 10000 */
  readonly headersTimeoutMs: number;
  /** How long an idle keep-alive connection stays open between requests. @default 5000 */
  readonly keepAliveTimeoutMs: number;
  /**
   * A connection with no traffic either way for this long is closed. Longer than the event streams'
   * keep-alive and the device request timeout, which are both silent waits. @default 60000
   */
  readonly idleTimeoutMs: number;
  /** Open connections to this node; more get 503 and are closed. @default 10000 */
  readonly maxConnections: number;
  /** Open connections from one IP to this node; more get 503 and are closed. @default 1000 */
  readonly maxConnectionsPerIp: number;
}

/** How long attempt logs are kept, and how many claim codes a device may present. */
export interface RetentionConfig {
  /** Claim attempts and refused device connections older than this are deleted. @default 30 */
  readonly attemptRetentionDays: number;
  /** Most refused-connection rows kept per device ID (the newest). @default 100 */
  readonly maxConnectionAttemptsPerDevice: number;
  /** Most claim-attempt rows kept per claim code and per device (the newest). @default 100 */
  readonly maxClaimAttemptsPerKey: number;
  /** Most rows kept in each attempt log as a whole (the newest). @default 100000 */
  readonly maxAttemptRows: number;
  /** How often each node sweeps the attempt logs, in milliseconds. @default 60000 */
  readonly sweepIntervalMs: number;
  /**
   * Finished webhook deliveries (succeeded or given up) and their attempts are deleted this many days after
   * they finished; pending ones are kept whatever their age. @default 30
   */
  readonly webhookLogRetentionDays: number;
  /** Most finished deliveries kept per hook (the newest), with their attempts. @default 1000 */
  readonly maxWebhookDeliveriesPerHook: number;
  /**
   * Claim codes one device may present per window before further ones are refused unchecked
   * (`rate_limited`), and presentations of one code per window. @default 10
   */
  readonly claimPresentationsPerWindow: number;
  /** The window of `claimPresentationsPerWindow`, in milliseconds. @default 3600000 (1 hour) */
  readonly claimPresentationWindowMs: number;
}

/** Webhook delivery: where it may go, how often it retries, and how much one account may send. @see docs/webhooks.md */
export interface WebhookConfig {
  /** Deliver to loopback, private, link-local and metadata addresses (development only). @default false */
  readonly allowPrivate: boolean;
  /** Time for a receiver to answer one request, in ms. @default 20000 */
  readonly requestTimeoutMs: number;
  /** First retry delay in ms; each further retry doubles it (with jitter). @default 1000 */
  readonly retryBaseMs: number;
  /** Longest delay between two attempts in ms (also the cap on `Retry-After`). @default 300000 (5 minutes) */
  readonly retryMaxMs: number;
  /** A delivery not done this long after its event is given up, in ms. @default 21600000 (6 hours) */
  readonly giveUpAfterMs: number;
  /** Consecutive failed attempts after which a hook is throttled (paused, deliveries kept). @default 10 */
  readonly throttleAfterFailures: number;
  /** How long a throttled hook pauses, in ms; doubles each further failure, up to `retryMaxMs`. @default 30000 */
  readonly throttleMs: number;
  /** Consecutive failed attempts after which a hook is disabled with a reason. @default 100 */
  readonly disableAfterFailures: number;
  /** Requests one hook may have in flight on one node. @default 2 */
  readonly perHookConcurrency: number;
  /** Requests per second one account (user or product) may send, across its hooks, per node. @default 50 */
  readonly accountRatePerSecond: number;
  /** How often a node looks for due deliveries it was not told about (retries, other nodes' events), in ms. @default 1000 */
  readonly pollMs: number;
}

/** Everything the cloud needs, validated once by the entry point and frozen. */
export interface CloudConfig {
  /** SQLite file path, or `:memory:`; ignored when `databaseUrl` is set. */
  readonly sqliteFile: string;
  /** `postgres://…` to use PostgreSQL instead of SQLite. */
  readonly databaseUrl: string | undefined;
  /** Whether `POST /v1/users` is open. @default false */
  readonly allowSignup: boolean;
  /**
   * Whether `POST /v1/provisioning/:id` may register IDs the cloud does not know yet. Off, unknown and
   * foreign IDs get the same 403, so IDs cannot be probed; on (development, `roost dev`), anyone signed in
   * may create a device ID, and learns whether one exists. @default false
   */
  readonly openDeviceRegistration: boolean;
  /** Claim code lifetime in seconds. @default 3600 @see spec/cloud-api.md §3.4 */
  readonly claimCodeTtlSeconds: number;
  /** Default access-token lifetime in seconds. @default 7776000 (90 days) @see spec/cloud-api.md §1.1 */
  readonly accessTokenTtlSeconds: number;
  /** Refresh-token lifetime in seconds. @default 1209600 (14 days) */
  readonly refreshTokenTtlSeconds: number;
  /** Largest accepted HTTP body in bytes. @default 65536 */
  readonly bodyLimitBytes: number;
  /** scrypt cost parameter N for password hashes (memory is 128·N·r bytes). @default 16384 */
  readonly passwordHashCost: number;
  /** Rate limits and the token endpoint lock-out. */
  readonly rateLimits: RateLimitConfig;
  /** HTTP timeouts and connection caps. */
  readonly http: HttpLimitsConfig;
  /** Attempt-log retention and the device-side claim-code rate limit. */
  readonly retention: RetentionConfig;
  /** Longest silence on an event stream before a keep-alive is written, in ms. @default 9000 @see spec/cloud-api.md §5.2 */
  readonly sseKeepAliveMs: number;
  /** Simultaneous event streams per IP. @default 100 @see spec/cloud-api.md §8 */
  readonly sseMaxPerIp: number;
  /** How long the API waits for a device to answer a function call or variable read, in ms. @default 30000 */
  readonly deviceRequestTimeoutMs: number;
  /** Source of time. @default Date.now */
  readonly clock: Clock;
  /** pino log level, or `silent`. @default "info" */
  readonly logLevel: string;
  /** Webhook delivery. */
  readonly webhooks: WebhookConfig;
}

/** The options a caller may set; every omitted one takes its documented default. */
export type CloudOptions = Partial<Omit<CloudConfig, "rateLimits" | "http" | "retention" | "webhooks">> & {
  rateLimits?: Partial<RateLimitConfig>;
  http?: Partial<HttpLimitsConfig>;
  retention?: Partial<RetentionConfig>;
  webhooks?: Partial<WebhookConfig>;
};

/** Applies defaults and freezes the result. */
export function createCloudConfig(options: CloudOptions = {}): CloudConfig {
  const {
    sqliteFile = ":memory:",
    databaseUrl,
    allowSignup = false,
    openDeviceRegistration = false,
    claimCodeTtlSeconds = 3600,
    accessTokenTtlSeconds = 7_776_000,
    refreshTokenTtlSeconds = 1_209_600,
    bodyLimitBytes = 65_536,
    passwordHashCost = 16_384,
    sseKeepAliveMs = 9000,
    sseMaxPerIp = 100,
    deviceRequestTimeoutMs = 30_000,
    clock = Date.now,
    logLevel = "info",
    rateLimits = {},
    http = {},
    retention = {},
    webhooks = {},
  } = options;
  const httpLimits: HttpLimitsConfig = {
    requestTimeoutMs: 30_000,
    headersTimeoutMs: 10_000,
    keepAliveTimeoutMs: 5_000,
    idleTimeoutMs: 60_000,
    maxConnections: 10_000,
    maxConnectionsPerIp: 1_000,
    ...http,
  };
  const retentionConfig: RetentionConfig = {
    attemptRetentionDays: 30,
    maxConnectionAttemptsPerDevice: 100,
    maxClaimAttemptsPerKey: 100,
    maxAttemptRows: 100_000,
    sweepIntervalMs: 60_000,
    webhookLogRetentionDays: 30,
    maxWebhookDeliveriesPerHook: 1000,
    claimPresentationsPerWindow: 10,
    claimPresentationWindowMs: 3_600_000,
    ...retention,
  };
  for (const [name, value] of Object.entries({
    claimCodeTtlSeconds,
    accessTokenTtlSeconds,
    refreshTokenTtlSeconds,
    bodyLimitBytes,
    ...httpLimits,
    ...retentionConfig,
  })) {
    if (!Number.isInteger(value) || value <= 0)
      throw new RangeError(`${name} must be a positive integer, got ${value}`);
  }
  // The per-device cap must keep at least a window's worth of rows, or the rate limit could never be reached.
  if (retentionConfig.maxClaimAttemptsPerKey < retentionConfig.claimPresentationsPerWindow)
    throw new RangeError("retention.maxClaimAttemptsPerKey must be at least claimPresentationsPerWindow");
  return Object.freeze({
    sqliteFile,
    databaseUrl,
    allowSignup,
    openDeviceRegistration,
    claimCodeTtlSeconds,
    accessTokenTtlSeconds,
    refreshTokenTtlSeconds,
    bodyLimitBytes,
    passwordHashCost,
    sseKeepAliveMs,
    sseMaxPerIp,
    deviceRequestTimeoutMs,
    clock,
    logLevel,
    rateLimits: Object.freeze({
      apiMax: 10_000,
      tokenMax: 100,
      sensitiveMax: 100,
      windowMs: 300_000,
      lockoutFailures: 10,
      lockoutMs: 1_800_000,
      ...rateLimits,
    }),
    http: Object.freeze(httpLimits),
    retention: Object.freeze(retentionConfig),
    webhooks: Object.freeze({
      allowPrivate: false,
      requestTimeoutMs: 20_000,
      retryBaseMs: 1000,
      retryMaxMs: 300_000,
      giveUpAfterMs: 21_600_000,
      throttleAfterFailures: 10,
      throttleMs: 30_000,
      disableAfterFailures: 100,
      perHookConcurrency: 2,
      accountRatePerSecond: 50,
      pollMs: 1000,
      ...webhooks,
    }),
  });
}
