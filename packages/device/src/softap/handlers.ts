/**
 * The device's SoftAP commands over a {@link SetupDeviceState}: one handler per command and a central switch
 * (STYLE C.15), shared by the TCP and HTTP servers, which differ only in framing.
 * @see spec/device-protocols.md A.4, A.6, A.7
 */
import { createPublicKey } from "node:crypto";

import type { SoftApCommand, SoftApRequestBodies, SoftApResponses } from "@roost/protocol";
import {
  encodeSoftApPublicKey,
  encodeSoftApResponseBody,
  isSoftApCommand,
  parseSoftApRequestBody,
  resolveSetRequest,
  SOFTAP_PROTOCOL_VERSION,
  SOFTAP_RESULT_CODES,
  toAppError,
} from "@roost/protocol";
import { decryptSoftApPrivateKey, openSoftApPassword } from "@roost/protocol/node";

import type { SetupDeviceState, WifiCredentials } from "./setup-state.js";

/** Which server a log entry comes from. */
export type SoftApTransport = "tcp" | "http";

/** One line of the SoftAP log: a command and what became of it. No secrets (passwords, claim codes) appear. */
export interface SoftApLogEntry {
  /** The server. */
  transport: SoftApTransport;
  /** The command name (or HTTP path) as received; empty when the request broke off before it. */
  command: string;
  /**
   * `ok`: answered with JSON; `rejected`: the body failed the device's checks, so the reply has no JSON (A.7);
   * `unknown-command`: no reply at all (A.2); `bad-request`: broken framing, connection closed;
   * `timeout`: the client was too slow, connection closed; `error`: the device state threw.
   */
  outcome: "ok" | "rejected" | "unknown-command" | "bad-request" | "timeout" | "error";
  /** The reply's `r`, for commands that have one. */
  result?: number;
  /** Why, for every outcome but `ok`. */
  detail?: string;
  /** Client address and port. */
  remote?: string;
}

/** Receives one {@link SoftApLogEntry} per command (and per broken or timed-out connection). */
export type SoftApLogger = (entry: SoftApLogEntry) => void;

/** What a command produced, for the transport to put on the wire. */
export type SoftApOutcome =
  /** Not a SoftAP command: the device writes nothing and closes. @see spec A.2 */
  | { kind: "unknown" }
  /** The body failed validation, or the device state threw: the device writes no JSON. @see spec A.4, A.7 */
  | { kind: "rejected" | "error"; detail: string }
  /** A reply; `afterReply` runs once it has been written (connect-ap leaves listening mode then). */
  | { kind: "reply"; json: string; result?: number; afterReply?: () => void };

/** The log fields of an outcome (internal to the two servers). */
export function describeOutcome(
  outcome: SoftApOutcome,
): Omit<SoftApLogEntry, "transport" | "remote" | "command"> {
  switch (outcome.kind) {
    case "unknown":
      return { outcome: "unknown-command", detail: "not a SoftAP command: no reply" };
    case "rejected":
    case "error":
      return { outcome: outcome.kind, detail: outcome.detail };
    case "reply":
      return { outcome: "ok", ...(outcome.result !== undefined && { result: outcome.result }) };
  }
}

/** Runs one command; never throws. */
export type SoftApHandler = (name: string, body: Uint8Array) => Promise<SoftApOutcome>;

/** Options of {@link createSoftApHandler}. */
export interface SoftApHandlerOptions {
  /** The device. */
  state: SetupDeviceState;
}

/** Creates the command dispatcher the SoftAP servers share. @see spec/device-protocols.md A.4 */
export function createSoftApHandler({ state }: SoftApHandlerOptions): SoftApHandler {
  return async (name, body) => {
    if (!isSoftApCommand(name)) return { kind: "unknown" };
    try {
      return await dispatch(state, name, body);
    } catch (error) {
      if (error instanceof RejectedBody) return { kind: "rejected", detail: error.detail };
      return { kind: "error", detail: toAppError(error).message };
    }
  };
}

/** Thrown by {@link parseRequest} only, so that a failing device state is never mistaken for a bad request. */
class RejectedBody extends Error {
  constructor(readonly detail: string) {
    super(detail);
  }
}

/** The device's request validation; a rejection means "no reply JSON". @see spec A.4 (parse failures) */
function parseRequest<C extends "configure-ap" | "set">(
  command: C,
  body: Uint8Array,
): SoftApRequestBodies[C] {
  try {
    return parseSoftApRequestBody(command, body);
  } catch (error) {
    throw new RejectedBody(toAppError(error).message);
  }
}

function reply<C extends SoftApCommand>(
  command: C,
  response: SoftApResponses[C],
): Extract<SoftApOutcome, { kind: "reply" }> {
  const result = (response as { r?: number }).r;
  return { kind: "reply", json: encodeSoftApResponseBody(command, response), result };
}

function dispatch(
  state: SetupDeviceState,
  command: SoftApCommand,
  body: Uint8Array,
): Promise<SoftApOutcome> | SoftApOutcome {
  switch (command) {
    case "version":
      return reply("version", { v: SOFTAP_PROTOCOL_VERSION });
    case "device-id":
      return reply("device-id", { id: state.deviceId.toUpperCase(), c: state.isClaimed() ? "1" : "0" });
    case "scan-ap":
      return scanAp(state);
    case "configure-ap":
      return configureAp(state, body);
    case "connect-ap":
      // The device does not parse the body (its idx is a firmware "todo"), answers, then leaves listening mode.
      return { ...reply("connect-ap", { r: SOFTAP_RESULT_CODES.OK }), afterReply: () => state.onConnectAp() };
    case "public-key":
      return publicKey(state);
    case "set":
      return set(state, body);
  }
}

/** A failed scan is an empty list, not an error. @see spec A.4 (scan-ap) */
async function scanAp(state: SetupDeviceState): Promise<SoftApOutcome> {
  let scans: SoftApResponses["scan-ap"]["scans"];
  try {
    scans = [...(await state.scanNetworks())];
  } catch {
    scans = [];
  }
  return reply("scan-ap", { scans });
}

/**
 * Decrypts `pwd` (and the EAP-TLS key), then stores the network. A decryption failure makes `r` negative and
 * stores nothing, as `save_credentials` does.
 * @see spec/device-protocols.md A.4 (configure-ap), A.6
 */
async function configureAp(state: SetupDeviceState, body: Uint8Array): Promise<SoftApOutcome> {
  const request = parseRequest("configure-ap", body);
  let password = "";
  let privateKey: Uint8Array | undefined;
  try {
    if (request.pwd !== undefined) password = openSoftApPassword(state.privateKey, request.pwd);
    if (request.ek !== undefined && request.key !== undefined) {
      privateKey = decryptSoftApPrivateKey({
        privateKey: requireKey(state),
        ek: request.ek,
        key: request.key,
      });
    }
  } catch {
    return reply("configure-ap", { r: SOFTAP_RESULT_CODES.DECRYPT_FAILED });
  }
  const credentials: WifiCredentials = {
    ssid: request.ssid ?? "",
    password,
    security: request.sec ?? 0,
    channel: request.ch ?? 0,
    index: request.idx ?? 0,
    ...(request.eap !== undefined && { eapType: request.eap }),
    ...(request.oi !== undefined && { outerIdentity: request.oi }),
    ...(request.ii !== undefined && { innerIdentity: request.ii }),
    ...(request.crt !== undefined && { clientCertificate: request.crt }),
    ...(request.ca !== undefined && { rootCertificate: request.ca }),
    ...(privateKey !== undefined && { privateKey }),
  };
  const result = await state.addWifiCredentials(credentials);
  return reply("configure-ap", { r: result ?? SOFTAP_RESULT_CODES.OK });
}

function requireKey(state: SetupDeviceState): NonNullable<SetupDeviceState["privateKey"]> {
  if (!state.privateKey) throw new Error("the device has no private key");
  return state.privateKey;
}

/** The key's SubjectPublicKeyInfo dumped from a 294-byte slot, or `r = 1` without a key. @see spec A.4 (public-key) */
function publicKey(state: SetupDeviceState): SoftApOutcome {
  if (!state.privateKey) return reply("public-key", { r: SOFTAP_RESULT_CODES.NO_PUBLIC_KEY });
  const der = new Uint8Array(createPublicKey(state.privateKey).export({ type: "spki", format: "der" }));
  return reply("public-key", { b: encodeSoftApPublicKey(der), r: SOFTAP_RESULT_CODES.OK });
}

/** Stores the claim code (`k = "cc"`), cut to 63 bytes; anything else is `r = -1`. @see spec A.4 (set) */
async function set(state: SetupDeviceState, body: Uint8Array): Promise<SoftApOutcome> {
  const claimCode = resolveSetRequest(parseRequest("set", body));
  if (claimCode === undefined) return reply("set", { r: SOFTAP_RESULT_CODES.SET_REJECTED });
  const result = await state.setClaimCode(claimCode);
  return reply("set", { r: result ?? SOFTAP_RESULT_CODES.OK });
}
