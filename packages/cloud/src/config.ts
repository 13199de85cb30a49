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
   * Claim codes one device may present per window before further ones are refused unchecked
   * (`rate_limited`), and presentations of one code per window. @default 10
   */
  readonly claimPresentationsPerWindow: number;
  /** The window of `claimPresentationsPerWindow`, in milliseconds. @default 3600000 (1 hour) */
  readonly claimPresentationWindowMs: number;
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
}

/** The options a caller may set; every omitted one takes its documented default. */
export type CloudOptions = Partial<Omit<CloudConfig, "rateLimits" | "http" | "retention">> & {
  rateLimits?: Partial<RateLimitConfig>;
  http?: Partial<HttpLimitsConfig>;
  retention?: Partial<RetentionConfig>;
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
  });
}
