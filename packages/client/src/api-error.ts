/** An error answer of the Cloud API, rebuilt from its wire shape. @see spec/cloud-api.md §6 */
export class ApiError extends Error {
  /** HTTP status. */
  readonly status: number;
  /** The OAuth-style `error` code, or Particle's `error` text, when the body had one. */
  readonly error: string | undefined;
  /** The whole parsed body. */
  readonly body: unknown;

  constructor(options: { status: number; body: unknown; method: string; path: string }) {
    super(
      `${options.method} ${options.path} → ${options.status}: ${messageOf(options.body) ?? "request failed"}`,
    );
    this.name = "ApiError";
    this.status = options.status;
    this.body = options.body;
    const record = isRecord(options.body) ? options.body : {};
    this.error = typeof record.error === "string" ? record.error : undefined;
  }
}

/** True for an {@link ApiError}. */
export function isApiError(value: unknown): value is ApiError {
  return value instanceof ApiError;
}

/** Statuses worth retrying after a pause: rate limits, timeouts reaching a device, server trouble. */
export const RETRYABLE_STATUSES: readonly number[] = [408, 429, 500, 502, 503, 504];

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The human message of an error body, looked up the way particle-cli does: `error_description`, `error`,
 * `errors[]`, then `info`. @see spec/cloud-api.md §6 (4)
 */
export function messageOf(body: unknown): string | undefined {
  if (!isRecord(body)) return typeof body === "string" && body.length > 0 ? body : undefined;
  if (typeof body.error_description === "string") return body.error_description;
  if (typeof body.error === "string")
    return typeof body.info === "string" ? `${body.error}: ${body.info}` : body.error;
  if (Array.isArray(body.errors) && body.errors.length > 0) return body.errors.map(String).join("; ");
  if (typeof body.info === "string") return body.info;
  return undefined;
}
