/**
 * Talking to a device in listening mode: the injected {@link SoftApTransport} carries one command's JSON
 * (TCP or HTTP), and {@link createSoftApClient} turns the seven commands into typed calls with the protocol
 * package's codecs, so every transport gets the same checks and errors.
 * @see spec/device-protocols.md A.2–A.7
 */
import type { SoftApCommand, SoftApRequestBodies, SoftApResponses } from "@roost/protocol";
import {
  decodeSoftApPublicKey,
  decodeSoftApResponseBody,
  encodeSoftApRequestBody,
  SOFTAP_CLAIM_CODE_KEY,
  SOFTAP_RESULT_CODES,
} from "@roost/protocol";

import { SetupError } from "./errors.js";

/**
 * Carries one SoftAP command to the device and its answer back. Implementations: HTTP with `fetch`
 * ({@link createHttpSoftApTransport}, also in browsers) and TCP port 5609 (`createTcpSoftApTransport` in
 * `@roost/setup/node`). Tests pass fakes.
 */
export interface SoftApTransport {
  /**
   * Sends `command` with an optional JSON body. Resolves with the JSON text of the reply, or `undefined` when
   * the device answered without JSON (it rejected the body, spec A.4). Rejects with a {@link SetupError}
   * `SOFTAP_UNREACHABLE` when the device cannot be reached or does not answer in time, `SOFTAP_FAILED` when it
   * answers with something that is not a SoftAP reply.
   */
  send(command: SoftApCommand, body?: string): Promise<string | undefined>;
}

/** The `device-id` answer. @see spec/device-protocols.md A.4 */
export interface SoftApDeviceInfo {
  /** The device ID, 24 lower-case hex (the device sends upper case). */
  id: string;
  /** The device's own claimed flag (`c`); it survives an unclaim in the cloud (spec §4.2). */
  claimed: boolean;
}

/** A Wi-Fi network the device can see (a `scan-ap` entry). @see spec/device-protocols.md A.4, A.5 */
export interface WifiNetwork {
  ssid: string;
  /** Signal strength in dBm. */
  rssi: number;
  /** WICED security value (`WIFI_SECURITY` of `@roost/protocol`). */
  security: number;
  channel: number;
}

/** What `configure-ap` sends. @see spec/device-protocols.md A.4 (configure-ap) */
export interface ConfigureWifiOptions {
  ssid: string;
  /** WICED security value. */
  security: number;
  channel: number;
  /** The password RSA-encrypted under the device key, hex; omitted for open networks. */
  encryptedPassword?: string | undefined;
}

/** The setup commands of a device in listening mode, typed. */
export interface SoftApClient {
  /** `device-id`: the ID and the claimed flag. */
  deviceInfo(): Promise<SoftApDeviceInfo>;
  /** `public-key`: the device's RSA-1024 key as SubjectPublicKeyInfo DER. */
  publicKey(): Promise<Uint8Array>;
  /** `set` `cc`: stores the claim code the device presents once online. */
  setClaimCode(code: string): Promise<void>;
  /** `scan-ap`: the networks the device sees. */
  scan(): Promise<WifiNetwork[]>;
  /** `configure-ap`: stores the Wi-Fi credentials. */
  configure(options: ConfigureWifiOptions): Promise<void>;
  /** `connect-ap`: the device leaves listening mode and joins the network. */
  connect(): Promise<void>;
}

/** Creates a {@link SoftApClient} over a transport. Failures are {@link SetupError}s. */
export function createSoftApClient(transport: SoftApTransport): SoftApClient {
  async function call<C extends SoftApCommand>(
    command: C,
    body?: SoftApRequestBodies[C],
  ): Promise<SoftApResponses[C]> {
    let text: string | undefined;
    try {
      text = await transport.send(
        command,
        body === undefined ? undefined : encodeSoftApRequestBody(command, body),
      );
    } catch (error) {
      if (error instanceof SetupError) throw error;
      throw new SetupError({
        code: "SOFTAP_UNREACHABLE",
        summary: `The device did not answer the ${command} command (${String(error)}).`,
        cause: error,
      });
    }
    if (text === undefined) {
      throw new SetupError({
        code: "SOFTAP_FAILED",
        summary: `The device rejected the ${command} request (it answered without JSON).`,
      });
    }
    try {
      return decodeSoftApResponseBody(command, text);
    } catch (error) {
      throw new SetupError({
        code: "SOFTAP_FAILED",
        summary: `The device's answer to ${command} is unreadable: ${error instanceof Error ? error.message : String(error)}.`,
        cause: error,
      });
    }
  }

  function expectOk(command: SoftApCommand, r: number, what: string): void {
    if (r === SOFTAP_RESULT_CODES.OK) return;
    throw new SetupError({ code: "SOFTAP_FAILED", summary: `${what} (${command} answered r=${r}).` });
  }

  return {
    async deviceInfo() {
      const { id, c } = await call("device-id");
      return { id: id.toLowerCase(), claimed: c === "1" };
    },
    async publicKey() {
      const { b, r } = await call("public-key");
      if (r !== SOFTAP_RESULT_CODES.OK || b === undefined) {
        throw new SetupError({
          code: "SOFTAP_FAILED",
          summary: `The device has no public key to encrypt the Wi-Fi password with (public-key answered r=${r}).`,
        });
      }
      try {
        return decodeSoftApPublicKey(b).spki;
      } catch (error) {
        throw new SetupError({
          code: "SOFTAP_FAILED",
          summary: `The device's public key is unreadable: ${error instanceof Error ? error.message : String(error)}.`,
          cause: error,
        });
      }
    },
    async setClaimCode(code) {
      const { r } = await call("set", { k: SOFTAP_CLAIM_CODE_KEY, v: code });
      expectOk("set", r, "The device did not store the claim code");
    },
    async scan() {
      const { scans } = await call("scan-ap");
      return scans.map((entry) => ({
        ssid: entry.ssid,
        rssi: entry.rssi,
        security: entry.sec,
        channel: entry.ch,
      }));
    },
    async configure({ ssid, security, channel, encryptedPassword }) {
      // Key order and types as the firmware's jsmn parser demands them (spec A.4); idx is ignored.
      const { r } = await call("configure-ap", {
        idx: 0,
        ssid,
        ...(encryptedPassword === undefined ? {} : { pwd: encryptedPassword }),
        sec: security,
        ch: channel,
      });
      if (r < 0) {
        throw new SetupError({
          code: "SOFTAP_FAILED",
          summary: `The device could not decrypt the Wi-Fi password (configure-ap answered r=${r}); the password was encrypted with the wrong key or padding.`,
        });
      }
      expectOk("configure-ap", r, `The device did not store the credentials for "${ssid}"`);
    },
    async connect() {
      const { r } = await call("connect-ap", { idx: 0 });
      expectOk("connect-ap", r, "The device did not start joining the network");
    },
  };
}

/** Options of {@link createHttpSoftApTransport}. */
export interface HttpSoftApTransportOptions {
  /** The device's HTTP server. @default "http://192.168.0.1" (spec A.1) */
  baseUrl?: string;
  /** Per-command time limit in ms. @default 8000 (softap-js) */
  timeoutMs?: number;
  /** @default globalThis.fetch */
  fetch?: (input: string, init: RequestInit) => Promise<Response>;
}

/**
 * SoftAP over HTTP (port 80 on a real device) with `fetch`, usable in browsers: GET for commands without a
 * body, else POST with the JSON sent as `application/x-www-form-urlencoded` so that no CORS preflight is
 * needed (as softap-js does; the device ignores method and content type).
 * @see spec/device-protocols.md A.3
 */
export function createHttpSoftApTransport({
  baseUrl = "http://192.168.0.1",
  timeoutMs = 8000,
  fetch = globalThis.fetch.bind(globalThis),
}: HttpSoftApTransportOptions = {}): SoftApTransport {
  const base = baseUrl.replace(/\/+$/, "");
  return {
    async send(command, body) {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), timeoutMs);
      let response: Response;
      let text: string;
      try {
        response = await fetch(`${base}/${command}`, {
          method: body === undefined ? "GET" : "POST",
          ...(body === undefined
            ? {}
            : { body, headers: { "content-type": "application/x-www-form-urlencoded" } }),
          signal: controller.signal,
        });
        text = await response.text();
      } catch (error) {
        throw new SetupError({
          code: "SOFTAP_UNREACHABLE",
          summary: controller.signal.aborted
            ? `The device did not answer ${command} at ${base} within ${timeoutMs} ms.`
            : `The device could not be reached at ${base} (${error instanceof Error ? error.message : String(error)}).`,
          cause: error,
        });
      } finally {
        clearTimeout(timer);
      }
      if (!response.ok) {
        throw new SetupError({
          code: "SOFTAP_FAILED",
          summary: `The device answered ${command} with HTTP ${response.status}; is ${base} a device in listening mode?`,
        });
      }
      return text.length === 0 ? undefined : text;
    },
  };
}
