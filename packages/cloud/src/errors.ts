import type { ErrorCode } from "@roost/protocol";
import { AppError } from "@roost/protocol";

export { AppError, toAppError } from "@roost/protocol";

/** A request body or parameter is missing or has the wrong type or value (the caller's fault). */
export class BadRequestError extends AppError {
  constructor(message: string) {
    super("BAD_REQUEST", message);
  }
}

/** The caller lacks a valid credential for this request (the caller's fault). */
export class InvalidTokenError extends AppError {
  constructor(message = "The access token provided is invalid.") {
    super("TOKEN_INVALID", message);
  }
}

/** The caller is authenticated but may not do this (the caller's fault). */
export class ForbiddenError extends AppError {
  constructor(message: string, code: ErrorCode = "FORBIDDEN") {
    super(code, message);
  }
}

/** The named thing does not exist, or the caller may not know that it does (the caller's fault). */
export class NotFoundError extends AppError {
  constructor(message: string) {
    super("NOT_FOUND", message);
  }
}

/** The device ID or name is unknown or not the caller's; one answer for both, so IDs cannot be probed. */
export class DevicePermissionError extends AppError {
  constructor() {
    super("DEVICE_PERMISSION_DENIED", "I didn't recognize that device name or ID");
  }
}

/** An OAuth grant failed: bad user credentials, bad refresh token (the caller's fault). */
export class InvalidGrantError extends AppError {
  constructor(message: string) {
    super("INVALID_GRANT", message);
  }
}

/** OAuth client authentication failed (the caller's fault). */
export class InvalidClientError extends AppError {
  constructor(message = "Client authentication failed") {
    super("INVALID_CLIENT", message);
  }
}

interface WireError {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

const OAUTH_ERRORS: Partial<Record<ErrorCode, [number, string]>> = {
  TOKEN_MISSING: [400, "invalid_request"],
  TOKEN_INVALID: [401, "invalid_token"],
  INVALID_GRANT: [400, "invalid_grant"],
  INVALID_CLIENT: [401, "invalid_client"],
  INVALID_SCOPE: [400, "invalid_scope"],
  UNSUPPORTED_GRANT_TYPE: [400, "unsupported_grant_type"],
  LOCKED_OUT: [429, "too_many_failures"],
  API_USER_FORBIDDEN: [400, "unauthorized"],
};

const STATUS: Record<ErrorCode, number> = {
  BAD_REQUEST: 400,
  MALFORMED_BODY: 400,
  PAYLOAD_TOO_LARGE: 413,
  ROUTE_NOT_FOUND: 404,
  NOT_FOUND: 404,
  CONFLICT: 400,
  RATE_LIMITED: 429,
  SERVER_BUSY: 503,
  INTERNAL: 500,
  TOKEN_MISSING: 400,
  TOKEN_INVALID: 401,
  INVALID_GRANT: 400,
  INVALID_CLIENT: 401,
  INVALID_SCOPE: 400,
  UNSUPPORTED_GRANT_TYPE: 400,
  LOCKED_OUT: 429,
  SIGNUP_DISABLED: 403,
  FORBIDDEN: 403,
  API_USER_FORBIDDEN: 400,
  DEVICE_PERMISSION_DENIED: 403,
  DEVICE_OWNED_BY_OTHER: 403,
  DEVICE_NOT_CONNECTED: 404,
  DEVICE_TIMEOUT: 408,
  SERVICE_UNAVAILABLE: 503,
  FRAME_TRUNCATED: 400,
  FRAME_MALFORMED: 400,
  FRAME_TOO_LARGE: 400,
  HANDSHAKE_FAILED: 400,
  DEVICE_UNKNOWN: 404,
  DEVICE_KEY_MISMATCH: 403,
};

/**
 * Maps an error to Particle's wire shape for it. @see spec/cloud-api.md §6
 * OAuth and token failures use `{error, error_description}`, device permission `{error, info}`,
 * claim refusals `{ok:false, errors:[…]}`, everything else `{ok:false, error}`.
 */
export function renderError(error: AppError): WireError {
  const status = STATUS[error.code];
  const oauth = OAUTH_ERRORS[error.code];
  if (oauth) return { status: oauth[0], body: { error: oauth[1], error_description: error.message } };
  switch (error.code) {
    case "DEVICE_PERMISSION_DENIED":
      return {
        status,
        body: {
          error: "Permission Denied",
          info: `${error.message}, try opening /v1/devices to list your devices`,
        },
      };
    case "DEVICE_OWNED_BY_OTHER":
    case "DEVICE_NOT_CONNECTED":
      return { status, body: { ok: false, errors: [error.message] } };
    case "INTERNAL":
      return { status, body: { ok: false, error: "Internal server error" } };
    default:
      return { status, body: { ok: false, error: error.message } };
  }
}
