/**
 * The last step of setup, back on a network with Internet access: wait until the claim reaches a final state
 * and the device is online in the owner's account. Roost's claim status (`GET /v1/roost/claims/:id`) gives
 * the outcome and the reason of each attempt; the owner's event stream (`roost/claim/attempt`,
 * `spark/status`) wakes the poll early; the device list (`GET /v1/devices`) is what the official SDKs poll and
 * what works against any Particle-compatible cloud.
 * @see spec/cloud-api.md §7.2, DESIGN.md "Beyond the anchors" 1–2
 */
import type { ApiClient, ClaimStatus, EventStream, Fetch, StreamEvent } from "@roost/client";
import { createApiClient, isApiError, openEventStream } from "@roost/client";

import { isNetworkFailure, SetupError } from "./errors.js";
import type { SetupProgress, SetupTimeouts } from "./types.js";

/** The event the cloud publishes to a claim code's owner for each attempt to use it. */
const CLAIM_ATTEMPT_EVENT = "roost/claim/attempt";

/** Options of {@link verifySetup}. */
export interface VerifyOptions {
  cloudUrl: string;
  fetch?: Fetch | undefined;
  /** The owner's token (user or customer). */
  accessToken: string;
  /** Lower-case device ID. */
  deviceId: string;
  /** Roost's claim id, when the cloud returned one. */
  claimId: string | undefined;
  /** Whether the device was given the claim code (otherwise only "online" is verified). */
  codeSent: boolean;
  timeouts: SetupTimeouts;
  signal?: AbortSignal | undefined;
  emit: (progress: SetupProgress) => void;
}

/** How verification ended, short of an error. */
export type VerifyOutcome =
  /** The claim is final and good (or none was needed); `online` as last seen in the device list. */
  | { verified: true; online: boolean }
  /** Time ran out with no final claim and the device never online. */
  | { verified: false };

/** One attempt, from the claim status or the event stream. */
interface Attempt {
  device_id: string;
  outcome: string;
  reason: string;
}

/** A refused attempt's error: what the cloud's reason means for the person setting up. */
function refusal(attempt: Attempt, claimId: string | undefined): SetupError {
  const details = { deviceId: attempt.device_id, claimId, reason: attempt.reason };
  switch (attempt.reason) {
    case "expired_code":
      return new SetupError({
        code: "CLAIM_CODE_EXPIRED",
        summary: `The device presented the claim code after it had expired, so the cloud did not claim device ${attempt.device_id}.`,
        details,
      });
    case "owned_by_other":
      return new SetupError({
        code: "DEVICE_OWNED_BY_OTHER",
        summary: `Device ${attempt.device_id} belongs to another account, so the cloud refused the claim: taking a device over needs its owner's approval (a transfer).`,
        details,
      });
    case "device_not_in_product":
    case "wrong_product":
      return new SetupError({
        code: "CLAIM_REFUSED",
        summary: `Device ${attempt.device_id} is not a device of this product, so its customers cannot claim it (${attempt.reason}).`,
        hint: "Ask the product's maker to add the device to the product, then run setup again.",
        details,
      });
    case "not_product_team":
      return new SetupError({
        code: "CLAIM_REFUSED",
        summary: `Device ${attempt.device_id} belongs to a product; only that product's customers and team can claim it.`,
        hint: "Set it up with the product's app (product mode), or ask the product's maker to add you to its team.",
        details,
      });
    default:
      return new SetupError({
        code: "CLAIM_REFUSED",
        summary: `The cloud refused to claim device ${attempt.device_id} (${attempt.reason}).`,
        details,
      });
  }
}

/** Wakes a waiting poll early (an event arrived); resolves the wait on timeout, rejects it on abort. */
function createWaker(): { wake(): void; wait(ms: number, signal: AbortSignal | undefined): Promise<void> } {
  let pending: (() => void) | undefined;
  let woken = false;
  return {
    wake() {
      woken = true;
      pending?.();
    },
    wait(ms, signal) {
      if (woken) {
        woken = false;
        return Promise.resolve();
      }
      return new Promise<void>((resolve, reject) => {
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          pending = undefined;
          woken = false;
          resolve();
        };
        const onAbort = () => {
          clearTimeout(timer);
          pending = undefined;
          reject(abortError());
        };
        const timer = setTimeout(done, Math.max(0, ms));
        pending = done;
        if (signal?.aborted) onAbort();
        else signal?.addEventListener("abort", onAbort, { once: true });
      });
    },
  };
}

/** The error of an aborted setup. */
export function abortError(): SetupError {
  return new SetupError({ code: "ABORTED", summary: "Setup was aborted." });
}

/** Throws {@link abortError} when the signal is aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError();
}

/** Waits `ms`, or rejects with {@link abortError}. */
export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return createWaker().wait(ms, signal);
}

function notAuthenticated(error: unknown): SetupError {
  return new SetupError({
    code: "NOT_AUTHENTICATED",
    summary: "The cloud no longer accepts the access token used for this setup.",
    details: { status: 401 },
    cause: error,
  });
}

/** `GET /v1/devices` until it answers, for at most `reconnectMs`: the way back to the Internet (iOS reachability). */
async function waitForCloud(api: ApiClient, options: VerifyOptions): Promise<void> {
  const deadline = Date.now() + options.timeouts.reconnectMs;
  for (;;) {
    throwIfAborted(options.signal);
    try {
      await api.listDevices();
      return;
    } catch (error) {
      if (isApiError(error) && error.status === 401) throw notAuthenticated(error);
      if (Date.now() >= deadline) {
        throw new SetupError({
          code: "NO_INTERNET",
          summary: `After switching back from the device's network, the cloud at ${options.cloudUrl} could not be reached for ${Math.round(options.timeouts.reconnectMs / 1000)} s (${isNetworkFailure(error) || !(error instanceof Error) ? "no connection" : error.message}).`,
          cause: error,
        });
      }
      await sleep(options.timeouts.pollIntervalMs, options.signal);
    }
  }
}

/**
 * Waits for the claim and the device (see the module comment). Resolves `{verified: false}` when time runs
 * out with nothing final, so that the caller can look for the device in listening mode.
 * @throws SetupError CLAIM_CODE_EXPIRED, DEVICE_OWNED_BY_OTHER or CLAIM_REFUSED for a refused attempt of this
 * device; NO_INTERNET when the cloud stays unreachable; NOT_AUTHENTICATED; ABORTED.
 */
export async function verifySetup(options: VerifyOptions): Promise<VerifyOutcome> {
  const { deviceId, claimId, codeSent, timeouts, signal, emit } = options;
  const fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  // Right after a network switch a request can hang instead of failing; give each poll a time limit (the
  // event stream brings its own signal and stays open).
  const fetch: Fetch = (input, init) =>
    fetchImpl(input, { ...init, signal: init.signal ?? AbortSignal.timeout(timeouts.reconnectMs) });
  const api = createApiClient({ baseUrl: options.cloudUrl, accessToken: options.accessToken, fetch });
  emit({ step: "verifying", deviceId, timeoutMs: timeouts.claimMs });
  await waitForCloud(api, options);

  const waker = createWaker();
  const reported = new Set<string>();
  let failure: SetupError | undefined;
  let claimed = !codeSent;
  // Without Roost's claim status (another Particle-compatible cloud), being listed is the proof of the claim.
  let statusAvailable = codeSent && claimId !== undefined;

  const onAttempt = (attempt: Attempt) => {
    if (attempt.device_id.toLowerCase() !== deviceId) return;
    const key = `${attempt.outcome}/${attempt.reason}`;
    if (!reported.has(key)) {
      reported.add(key);
      emit({
        step: "claim-attempt",
        deviceId,
        outcome: attempt.outcome === "claimed" ? "claimed" : "refused",
        reason: attempt.reason,
      });
    }
    if (attempt.outcome === "claimed" || attempt.reason === "already_owned") claimed = true;
    else failure ??= refusal(attempt, claimId);
  };

  const onEvent = (event: StreamEvent) => {
    if (event.name === CLAIM_ATTEMPT_EVENT && event.data !== null) {
      try {
        const attempt = JSON.parse(event.data) as Partial<Attempt> & { claim_id?: string };
        if (
          attempt.claim_id === claimId &&
          typeof attempt.device_id === "string" &&
          typeof attempt.outcome === "string" &&
          typeof attempt.reason === "string"
        ) {
          onAttempt({ device_id: attempt.device_id, outcome: attempt.outcome, reason: attempt.reason });
        }
      } catch {
        // Not the shape Roost sends: the poll still sees the attempt.
      }
    }
    if (String(event.coreid).toLowerCase() === deviceId || event.name === CLAIM_ATTEMPT_EVENT) waker.wake();
  };

  const applyStatus = (status: ClaimStatus) => {
    for (const attempt of status.attempts) onAttempt(attempt);
    if (failure) return;
    if (status.status === "claimed") {
      if (status.device_id !== null && status.device_id.toLowerCase() !== deviceId) {
        failure = new SetupError({
          code: "CLAIM_REFUSED",
          summary: `The claim code was used by another device (${status.device_id}), not by ${deviceId}.`,
          hint: "Run setup again: it gets a fresh claim code.",
          details: { deviceId, claimId, reason: "used_code" },
        });
      } else claimed = true;
    } else if (status.status === "expired" && !claimed) {
      failure = new SetupError({
        code: "CLAIM_CODE_EXPIRED",
        summary: "The claim code expired before the device presented it.",
        details: { deviceId, claimId, reason: "expired_code" },
      });
    } else if (status.status === "revoked" && !claimed) {
      failure = new SetupError({
        code: "CLAIM_REFUSED",
        summary: "The claim code was revoked (its customer was deleted) before the device presented it.",
        details: { deviceId, claimId, reason: "revoked_code" },
      });
    }
  };

  let stream: EventStream | undefined;
  try {
    stream = await openEventStream({
      baseUrl: options.cloudUrl,
      accessToken: options.accessToken,
      path: "/v1/devices/events",
      onEvent,
      fetch,
    });
  } catch {
    // The stream only speeds things up; polling alone reaches the same answer.
  }

  try {
    const deadline = Date.now() + timeouts.claimMs;
    let online = false;
    for (;;) {
      throwIfAborted(signal);
      if (statusAvailable && claimId !== undefined && !claimed) {
        try {
          applyStatus(await api.getClaimStatus(claimId));
        } catch (error) {
          if (isApiError(error) && error.status === 401) throw notAuthenticated(error);
          // A cloud without Roost's extension answers 404: fall back to the device list.
          if (isApiError(error) && error.status === 404) statusAvailable = false;
        }
      }
      if (failure) throw failure;
      try {
        const device = (await api.listDevices()).find((entry) => entry.id.toLowerCase() === deviceId);
        if (device) {
          if (!statusAvailable) claimed = true;
          online = device.online || device.connected;
        }
      } catch (error) {
        if (isApiError(error) && error.status === 401) throw notAuthenticated(error);
        // Anything else is retried on the next round.
      }
      if (claimed && online) {
        emit({ step: "device-online", deviceId });
        return { verified: true, online: true };
      }
      const left = deadline - Date.now();
      if (left <= 0) return claimed && codeSent ? { verified: true, online: false } : { verified: false };
      await waker.wait(Math.min(timeouts.pollIntervalMs, left), signal);
    }
  } finally {
    stream?.close();
  }
}
