/**
 * The setup SDK's errors: one table of codes, each with the advice shown to the person setting up the device,
 * and one error class. Every failure of {@link runSetup} reaches the caller as a {@link SetupError}.
 */
import { isApiError } from "@roost/client";

/**
 * Every way setup can fail, with what the person should do about it (the `hint` of a {@link SetupError}).
 * Apps switch on the code; they may show the hint as is.
 */
export const SETUP_ERROR_HINTS = {
  /** The app passed options that cannot work (the app developer's fault). */
  INVALID_OPTIONS: "Fix the options passed to runSetup; the message says which one.",
  /** The cloud refused the credentials or the token (expired, revoked, or not a customer of the product). */
  NOT_AUTHENTICATED:
    "Log in again (for a two-legged setup, ask your backend for a fresh customer token), then retry.",
  /** The cloud could not be reached, before setup or after switching back from the device's network. */
  NO_INTERNET:
    "Check that this phone or computer is on a network with Internet access and that the cloud URL is right, then retry.",
  /** The cloud answered with an error the SDK has no better name for. */
  CLOUD_ERROR: "Retry in a moment; if it keeps failing, the cloud's logs say why.",
  /** No device access point (`Photon-…`) was found, or the device did not answer on it. */
  DEVICE_NOT_FOUND:
    "Put the device in listening mode (hold SETUP until the LED blinks blue), stay close to it and retry.",
  /** Joining the device's access point, or returning to the previous network, failed. */
  NETWORK_SWITCH_FAILED:
    "Join the device's Wi-Fi network (Photon-…) by hand and retry; afterwards rejoin your usual network.",
  /** The device stopped answering in the middle of setup. */
  SOFTAP_UNREACHABLE:
    "Stay joined to the device's Wi-Fi network, keep the device in listening mode (blinking blue) and retry.",
  /** The device answered a setup command with an error or with something unreadable. */
  SOFTAP_FAILED:
    "Put the device back in listening mode (hold SETUP until it blinks blue) and retry; if it keeps failing, reset it.",
  /** The Wi-Fi network to configure is not among those the device can see. */
  WIFI_NETWORK_NOT_FOUND:
    "Check the network name, move the device closer to the router, or give the security type for a hidden network.",
  /** The device could not join the Wi-Fi network and went back to listening mode. */
  WIFI_PASSWORD_WRONG:
    "Check the Wi-Fi password and run setup again; the device is waiting in listening mode (blinking blue).",
  /** The device belongs to another account. */
  DEVICE_OWNED_BY_OTHER:
    "Ask the current owner to release the device (or to approve a transfer to you), then run setup again.",
  /** The claim code expired (codes last one hour) before the device presented it. */
  CLAIM_CODE_EXPIRED: "Run setup again: it gets a fresh claim code.",
  /** The cloud refused the claim for another reason (see `details.reason`). */
  CLAIM_REFUSED:
    "The device cannot be claimed by this account as things stand; the message says why. Contact the product's maker if it is a product device.",
  /** Neither a claim attempt nor the device showed up in the cloud in time. */
  CLAIM_TIMEOUT:
    "The Wi-Fi password may be wrong, or the network may not reach the Internet: check both, put the device back in listening mode (blinking blue) and run setup again.",
  /** The caller aborted setup. */
  ABORTED: "Setup was cancelled; run it again when ready.",
  /** A bug: something failed that the SDK did not expect. */
  INTERNAL: "This is a bug in the setup SDK; please report it with this message.",
} as const;

/** A setup error code (a key of {@link SETUP_ERROR_HINTS}). */
export type SetupErrorCode = keyof typeof SETUP_ERROR_HINTS;

/** Every setup error code, in the order of {@link SETUP_ERROR_HINTS}. */
export const SETUP_ERROR_CODES = Object.keys(SETUP_ERROR_HINTS) as readonly SetupErrorCode[];

/** Facts attached to an error, for apps that show more than the message. */
export interface SetupErrorDetails {
  /** The device concerned, once known (24 lower-case hex). */
  deviceId?: string;
  /** The claim concerned (Roost's claim id). */
  claimId?: string;
  /** The cloud's reason for a refused claim attempt, e.g. `expired_code`, `owned_by_other`. */
  reason?: string;
  /** The HTTP status of a failed cloud call. */
  status?: number;
}

/** Options of {@link SetupError}. */
export interface SetupErrorOptions {
  code: SetupErrorCode;
  /** What went wrong, one or two sentences. */
  summary: string;
  /** What to do; defaults to the code's entry in {@link SETUP_ERROR_HINTS}. */
  hint?: string;
  details?: SetupErrorDetails;
  cause?: unknown;
}

/**
 * A failed setup: a stable `code`, what went wrong (`summary`) and what to do (`hint`); `message` is both.
 * Not an `AppError` of `@roost/protocol`: its codes are the SDK's own, for the person setting up a device,
 * not the cloud's wire codes.
 */
export class SetupError extends Error {
  readonly code: SetupErrorCode;
  readonly summary: string;
  readonly hint: string;
  readonly details: SetupErrorDetails;

  constructor({ code, summary, hint = SETUP_ERROR_HINTS[code], details = {}, cause }: SetupErrorOptions) {
    super(`${summary} ${hint}`, cause === undefined ? undefined : { cause });
    this.name = "SetupError";
    this.code = code;
    this.summary = summary;
    this.hint = hint;
    this.details = details;
  }
}

/** True for a {@link SetupError} (with a specific code when one is given). */
export function isSetupError(value: unknown, code?: SetupErrorCode): value is SetupError {
  return value instanceof SetupError && (code === undefined || value.code === code);
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** What `fetch` says when no HTTP answer came: Node (undici), Chromium, Firefox, Safari. */
const NETWORK_FAILURE_MESSAGE =
  /fetch failed|failed to fetch|networkerror|load failed|network request failed/i;

/** True for what `fetch` throws when the network is down or the host unreachable (not an HTTP answer). */
export function isNetworkFailure(error: unknown): boolean {
  return error instanceof TypeError && NETWORK_FAILURE_MESSAGE.test(error.message);
}

/** True for an abort (`AbortSignal`), whichever way the runtime reports it. */
function isAbort(error: unknown): boolean {
  return error instanceof Error && (error.name === "AbortError" || error.name === "TimeoutError");
}

/**
 * Normalizes anything thrown during setup into a {@link SetupError}, once, at the boundary of `runSetup`:
 * setup errors pass through, cloud answers become NOT_AUTHENTICATED (401) or CLOUD_ERROR, network failures
 * NO_INTERNET, aborts ABORTED, anything else INTERNAL (with the original as `cause`).
 */
export function toSetupError(error: unknown): SetupError {
  if (error instanceof SetupError) return error;
  if (isApiError(error)) {
    return new SetupError({
      code: error.status === 401 ? "NOT_AUTHENTICATED" : "CLOUD_ERROR",
      summary: `The cloud refused a request: ${error.message}.`,
      details: { status: error.status },
      cause: error,
    });
  }
  if (isAbort(error)) return new SetupError({ code: "ABORTED", summary: "Setup was aborted.", cause: error });
  if (isNetworkFailure(error)) {
    return new SetupError({
      code: "NO_INTERNET",
      summary: `The cloud could not be reached (${describe(error)}).`,
      cause: error,
    });
  }
  return new SetupError({
    code: "INTERNAL",
    summary: `Setup failed unexpectedly: ${describe(error)}.`,
    cause: error,
  });
}
