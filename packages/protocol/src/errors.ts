/**
 * The one table of Roost's error codes. Every error that crosses a boundary (HTTP, the device gateway,
 * the CLI) carries one of these; the HTTP renderer in `@roost/cloud` maps each to Particle's wire shape.
 */
export const ERROR_CODES = [
  // Request shape and routing.
  "BAD_REQUEST",
  "MALFORMED_BODY",
  "PAYLOAD_TOO_LARGE",
  "ROUTE_NOT_FOUND",
  "NOT_FOUND",
  "CONFLICT",
  "RATE_LIMITED",
  "SERVER_BUSY",
  "INTERNAL",
  // OAuth and tokens.
  "TOKEN_MISSING",
  "TOKEN_INVALID",
  "INVALID_GRANT",
  "INVALID_CLIENT",
  "INVALID_SCOPE",
  "UNSUPPORTED_GRANT_TYPE",
  "LOCKED_OUT",
  "SIGNUP_DISABLED",
  // Authorization.
  "FORBIDDEN",
  "API_USER_FORBIDDEN",
  "DEVICE_PERMISSION_DENIED",
  // Claiming.
  "DEVICE_OWNED_BY_OTHER",
  "DEVICE_NOT_CONNECTED",
  "DEVICE_TIMEOUT",
  // Cluster: the bus between nodes or the database is unreachable (retry later, or through another node).
  "SERVICE_UNAVAILABLE",
  // Device protocol (gateway side).
  "FRAME_TRUNCATED",
  "FRAME_MALFORMED",
  "FRAME_TOO_LARGE",
  "HANDSHAKE_FAILED",
  "DEVICE_UNKNOWN",
  "DEVICE_KEY_MISMATCH",
] as const;

/** A Roost error code (see {@link ERROR_CODES}). */
export type ErrorCode = (typeof ERROR_CODES)[number];

/** Base class of every error Roost throws on purpose: a stable `code`, a human message and an optional cause. */
export class AppError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The input bytes ended before a complete structure could be read (the sender's fault). */
export class TruncatedFrameError extends AppError {
  constructor(message: string) {
    super("FRAME_TRUNCATED", message);
  }
}

/** The input bytes are complete but break a rule of the wire format (the sender's fault). */
export class MalformedFrameError extends AppError {
  constructor(message: string) {
    super("FRAME_MALFORMED", message);
  }
}

/** A frame announces a size above the configured maximum (the sender's fault, or an attack). */
export class FrameTooLargeError extends AppError {
  constructor(message: string) {
    super("FRAME_TOO_LARGE", message);
  }
}

/** Normalizes any thrown value into an {@link AppError}, keeping the original as `cause`. */
export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new AppError("INTERNAL", message, { cause: error });
}
