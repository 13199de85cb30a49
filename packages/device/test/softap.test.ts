import { createPublicKey, generateKeyPairSync } from "node:crypto";
import { createRequire } from "node:module";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";

import type { SoftApScanEntry } from "@roost/protocol";
import { encodeSoftApRequest, removePkcs7Padding, SOFTAP_RESULT_CODES, WIFI_SECURITY } from "@roost/protocol";
import { encryptSoftApSecret, exportPublicKeyDer } from "@roost/protocol/node";

import type { SoftApLogEntry } from "../src/softap/handlers.js";
import { SOFTAP_HELLO_TEXT, startSoftApHttpServer } from "../src/softap/http-server.js";
import { createMemorySetupState } from "../src/softap/setup-state.js";
import type { MemorySetupState, MemorySetupStateOptions } from "../src/softap/setup-state.js";
import { startSoftApTcpServer } from "../src/softap/tcp-server.js";
import type { RunningSoftApServer } from "../src/softap/tcp-server.js";

// --- the official client --------------------------------------------------------------------------------

/** The callback API of softap-setup 4.1.0 (spec A.8), typed for what these tests call. */
interface SoftApSetupClient {
  deviceInfo(cb: Callback<{ id: string; claimed: boolean }>): void;
  publicKey(cb: Callback<string>): void;
  setClaimCode(code: string, cb: Callback<undefined>): void;
  scan(cb: Callback<SoftApScanEntry[]>): void;
  configure(options: Record<string, unknown>, cb: Callback<{ r: number } | undefined>): void;
  connect(cb: Callback<undefined>): void;
  version(cb: Callback<{ v: number }>): void;
}
type Callback<T> = (error: Error | null | undefined, value?: T) => void;
interface SoftApSetupOptions {
  host: string;
  port: number;
  protocol: "tcp" | "http";
  timeout: number;
}

// softap-setup is CommonJS without types; its `main` (index.js) exports the factory (spec A.8).
const SoftAPSetup = createRequire(import.meta.url)("softap-setup") as (
  options: SoftApSetupOptions,
) => SoftApSetupClient;

/** Turns one softap-setup call into a promise; its checkResponse bug may call back twice (spec A.7), first wins. */
function call<T>(start: (cb: Callback<T>) => void): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    start((error, value) => (error ? reject(error) : resolve(value)));
  });
}

// --- fixtures ---------------------------------------------------------------------------------------------

const DEVICE_ID = "0123456789abcdef01234567";
const device = generateKeyPairSync("rsa", { modulusLength: 1024, publicExponent: 65537 });
const NETWORKS: SoftApScanEntry[] = [
  { ssid: "home", rssi: -48, sec: WIFI_SECURITY.WPA2_AES_PSK, ch: 6, mdr: 144444 },
  { ssid: "cafe", rssi: -77, sec: WIFI_SECURITY.OPEN, ch: 11, mdr: 54000 },
];

function memoryState(overrides: Partial<MemorySetupStateOptions> = {}): MemorySetupState {
  return createMemorySetupState({
    deviceId: DEVICE_ID,
    privateKey: device.privateKey,
    networks: NETWORKS,
    ...overrides,
  });
}

interface Exchange {
  /** Everything the server sent before it closed. */
  text: string;
  /** Milliseconds from connect to close. */
  elapsedMs: number;
}

/**
 * Opens a raw TCP connection, writes `chunks` (then half-closes if asked), and collects the reply until close.
 * Like a real client it closes its side once the server has ended.
 */
function exchange(
  port: number,
  chunks: (string | Uint8Array)[],
  { halfClose = false } = {},
): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const received: Buffer[] = [];
    const socket = connect({ host: "127.0.0.1", port, allowHalfOpen: true });
    socket.on("connect", () => {
      for (const chunk of chunks) socket.write(chunk);
      if (halfClose) socket.end();
    });
    socket.on("data", (chunk: Buffer) => received.push(chunk));
    socket.on("end", () => socket.end());
    socket.on("error", reject);
    socket.on("close", () =>
      resolve({ text: Buffer.concat(received).toString("utf8"), elapsedMs: Date.now() - started }),
    );
  });
}

const TRANSPORTS = [
  { protocol: "tcp" as const, start: startSoftApTcpServer },
  { protocol: "http" as const, start: startSoftApHttpServer },
];

// --- the whole sequence with the official client ------------------------------------------------------------

describe.each(TRANSPORTS)(
  "softap-setup 4.1.0 over $protocol against the simulated device (spec A.8)",
  ({ protocol, start }) => {
    const client = (server: RunningSoftApServer): SoftApSetupClient =>
      SoftAPSetup({ host: "127.0.0.1", port: server.port, protocol, timeout: 3000 });

    it("runs deviceInfo, publicKey, setClaimCode, scan, configure and connect", async () => {
      const log: SoftApLogEntry[] = [];
      const state = memoryState();
      await using server = await start({ state, port: 0, log: (entry) => log.push(entry) });
      const softap = client(server);

      // device-id: softap-js lower-cases the upper-case id and compares c with the string "1" (spec A.4).
      expect(await call<{ id: string; claimed: boolean }>((cb) => softap.deviceInfo(cb))).toEqual({
        id: DEVICE_ID,
        claimed: false,
      });

      // public-key: softap-js cuts 22 bytes off the dump and imports PKCS#1; it hands back a PKCS#8 PEM.
      const pem = await call<string>((cb) => softap.publicKey(cb));
      expect(exportPublicKeyDer(createPublicKey(pem ?? ""))).toEqual(exportPublicKeyDer(device.publicKey));

      await call((cb) =>
        softap.setClaimCode("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyz+/", cb),
      );
      expect(state.claimCode).toBe(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyz+".slice(0, 63),
      );
      expect(state.claimCode).toHaveLength(63);

      expect(await call<SoftApScanEntry[]>((cb) => softap.scan(cb))).toEqual(NETWORKS);

      // configure: the client encrypts the password with node-rsa under the key it just fetched (spec A.6).
      const configured = await call<{ r: number } | undefined>((cb) =>
        softap.configure(
          { ssid: "home", security: "wpa2_aes", password: "correct horse battery", channel: 6 },
          cb,
        ),
      );
      expect(configured).toEqual({ r: 0 });
      expect(state.credentials).toEqual([
        {
          ssid: "home",
          password: "correct horse battery",
          security: WIFI_SECURITY.WPA2_AES_PSK,
          channel: 6,
          index: 0,
        },
      ]);

      await call((cb) => softap.connect(cb));
      await vi.waitFor(() => expect(state.connectRequests).toBe(1));

      expect(await call((cb) => softap.version(cb))).toEqual({ v: 2 });

      const commands = log.map((entry) => entry.command);
      const sequence = ["device-id", "public-key", "set", "scan-ap", "configure-ap", "connect-ap", "version"];
      // Over TCP softap-js first opens a throw-away device-id connection (its `warmedUp` flag, spec A.2).
      expect(commands).toEqual(protocol === "tcp" ? ["device-id", ...sequence] : sequence);
      expect(log.every((entry) => entry.outcome === "ok" && entry.transport === protocol)).toBe(true);
      expect(log.find((entry) => entry.command === "configure-ap")?.result).toBe(0);
    });

    it("reports a claimed device and an open network without a password", async () => {
      const state = memoryState({ claimed: true });
      await using server = await start({ state, port: 0 });
      const softap = client(server);
      expect((await call<{ id: string; claimed: boolean }>((cb) => softap.deviceInfo(cb)))?.claimed).toBe(
        true,
      );
      await call<string>((cb) => softap.publicKey(cb));
      expect(await call((cb) => softap.configure({ ssid: "cafe" }, cb))).toEqual({ r: 0 });
      expect(state.credentials).toEqual([
        { ssid: "cafe", password: "", security: WIFI_SECURITY.OPEN, channel: 0, index: 0 },
      ]);
    });

    it("configures a PEAP network: identities in clear, password encrypted", async () => {
      const state = memoryState();
      await using server = await start({ state, port: 0 });
      const softap = client(server);
      await call<string>((cb) => softap.publicKey(cb));
      const options = {
        ssid: "corp",
        security: "wpa2_enterprise",
        eap: "peap",
        username: "alice",
        password: "s3cret",
        outer_identity: "anonymous",
        channel: 1,
      };
      expect(await call((cb) => softap.configure(options, cb))).toEqual({ r: 0 });
      expect(state.credentials).toEqual([
        {
          ssid: "corp",
          password: "s3cret",
          security: WIFI_SECURITY.WPA2_ENTERPRISE_MIXED,
          channel: 1,
          index: 0,
          eapType: 25,
          innerIdentity: "alice",
          outerIdentity: "anonymous",
        },
      ]);
    });

    it("configures an EAP-TLS network: the private key travels AES-encrypted under an RSA-encrypted key", async () => {
      const state = memoryState();
      await using server = await start({ state, port: 0 });
      const softap = client(server);
      await call<string>((cb) => softap.publicKey(cb));
      const certificate = "-----BEGIN CERTIFICATE-----\nMIIBclient\n-----END CERTIFICATE-----";
      const privateKey =
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----";
      const ca = "-----BEGIN CERTIFICATE-----\nMIIBroot\n-----END CERTIFICATE-----";
      const options = {
        ssid: "lab",
        security: "wpa2_enterprise_aes",
        eap: "tls",
        client_certificate: certificate,
        private_key: privateKey,
        ca,
        channel: 3,
      };
      expect(await call((cb) => softap.configure(options, cb))).toEqual({ r: 0 });
      const [stored] = state.credentials;
      // softap-js appends CR LF to each PEM (formatPem); the device keeps the AES padding (spec A.6).
      expect(stored).toMatchObject({
        ssid: "lab",
        password: "",
        security: WIFI_SECURITY.WPA2_ENTERPRISE_AES,
        eapType: 13,
        clientCertificate: `${certificate}\r\n`,
        rootCertificate: `${ca}\r\n`,
      });
      expect(new TextDecoder().decode(removePkcs7Padding(stored?.privateKey ?? new Uint8Array(0)))).toBe(
        `${privateKey}\r\n`,
      );
    });
  },
);

describe("softap-setup 4.1.0 quirks seen from the device (spec A.2, A.7)", () => {
  it("sends a non-ASCII SSID with a length in UTF-16 units, so the device reads cut JSON and replies with no body", async () => {
    const log: SoftApLogEntry[] = [];
    const state = memoryState();
    await using server = await startSoftApTcpServer({ state, port: 0, log: (entry) => log.push(entry) });
    const softap = SoftAPSetup({ host: "127.0.0.1", port: server.port, protocol: "tcp", timeout: 3000 });
    await call<string>((cb) => softap.publicKey(cb));
    // softap-js gets "\n\n", cannot parse it, and calls back with neither error nor data.
    expect(await call((cb) => softap.configure({ ssid: "Café ☕", security: "open" }, cb))).toBeUndefined();
    expect(state.credentials).toEqual([]);
    expect(log.at(-1)).toMatchObject({ command: "configure-ap", outcome: "rejected" });
  });
});

// --- bad input over raw TCP -------------------------------------------------------------------------------

describe("the TCP server under bad input (spec A.2, A.4, A.7)", () => {
  const TIMEOUT_MS = 300;
  const log: SoftApLogEntry[] = [];
  let state: MemorySetupState;
  let server: RunningSoftApServer;

  beforeAll(async () => {
    state = memoryState();
    server = await startSoftApTcpServer({
      state,
      port: 0,
      requestTimeoutMs: TIMEOUT_MS,
      maxBodyLength: 1024,
      log: (entry) => log.push(entry),
    });
  });
  afterAll(() => server.close());

  /** After every bad input the server must still answer a well-formed request. */
  async function expectStillServing(): Promise<void> {
    expect((await exchange(server.port, ["version\n0\n\n"])).text).toBe('\n\n{"v":2}');
  }

  it("answers a well-formed request with the preamble and the JSON, then closes", async () => {
    expect((await exchange(server.port, ["device-id\n0\n\n"])).text).toBe(
      `\n\n{"id":"${DEVICE_ID.toUpperCase()}","c":"0"}`,
    );
  });

  it("answers a request that arrives one byte at a time", async () => {
    const bytes = encodeSoftApRequest({ name: "set", body: '{"k":"cc","v":"bytewise"}' });
    expect(
      (
        await exchange(
          server.port,
          Array.from(bytes, (b) => Uint8Array.of(b)),
        )
      ).text,
    ).toBe('\n\n{"r":0}');
    expect(state.claimCode).toBe("bytewise");
  });

  it("still replies to a client that half-closes after its request", async () => {
    expect((await exchange(server.port, ["version\n0\n\n"], { halfClose: true })).text).toBe('\n\n{"v":2}');
  });

  it("closes on garbage without writing anything", async () => {
    const garbage = Uint8Array.from({ length: 64 }, (_, i) => (i * 37) % 256);
    expect((await exchange(server.port, [garbage])).text).toBe("");
    expect(log.at(-1)).toMatchObject({ outcome: "bad-request" });
    await expectStillServing();
  });

  it.each(["ant-internal", "hello", "provision-keys"])(
    "closes on the unknown command %s without even the preamble",
    async (name) => {
      expect((await exchange(server.port, [`${name}\n0\n\n`])).text).toBe("");
      expect(log.at(-1)).toMatchObject({ command: name, outcome: "unknown-command" });
      await expectStillServing();
    },
  );

  it("closes on a length above the limit before any body arrives", async () => {
    const result = await exchange(server.port, ["set\n99999999\n\n"]);
    expect(result.text).toBe("");
    expect(result.elapsedMs).toBeLessThan(TIMEOUT_MS);
    expect(log.at(-1)).toMatchObject({
      outcome: "bad-request",
      detail: expect.stringContaining("1024") as unknown,
    });
    await expectStillServing();
  });

  it("closes a slow client that never finishes its request after the timeout", async () => {
    const result = await exchange(server.port, ['configure-ap\n100\n\n{"ssid":']);
    expect(result.text).toBe("");
    expect(result.elapsedMs).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
    expect(result.elapsedMs).toBeLessThan(TIMEOUT_MS * 5);
    expect(log.at(-1)).toMatchObject({ outcome: "timeout" });
    await expectStillServing();
  });

  it("closes a client that connects and says nothing after the timeout", async () => {
    const result = await exchange(server.port, []);
    expect(result.text).toBe("");
    expect(result.elapsedMs).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
    await expectStillServing();
  });

  it(
    "drops a client that takes its reply but never closes, after the timeout",
    { timeout: 60_000 },
    async () => {
      // The server's FIN has arrived, so only a write after the deadline shows whether the server let go:
      // a dropped socket answers it with a reset, a lingering one would swallow it.
      const socket = connect({ host: "127.0.0.1", port: server.port, allowHalfOpen: true });
      socket.on("error", () => {});
      const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
      const reply = new Promise<string>((resolve) => {
        const chunks: Buffer[] = [];
        socket
          .on("data", (chunk: Buffer) => chunks.push(chunk))
          .once("end", () => resolve(Buffer.concat(chunks).toString()));
      });
      socket.write("version\n0\n\n");
      expect(await reply).toBe('\n\n{"v":2}');
      // Keep writing until the server's reset closes the socket: a write before the deadline is swallowed
      // by the open connection, one after it draws the reset. No guess at how long the deadline takes.
      let isClosed = false;
      void closed.then(() => (isClosed = true));
      while (!isClosed) {
        socket.write("still there?");
        await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, TIMEOUT_MS))]);
      }
    },
  );

  it("serves many clients at once, slow ones included", async () => {
    const slow = Array.from({ length: 5 }, () => exchange(server.port, ["version\n"]));
    const fast = Array.from({ length: 5 }, () => exchange(server.port, ["version\n0\n\n"]));
    expect((await Promise.all(fast)).map((r) => r.text)).toEqual(Array(5).fill('\n\n{"v":2}'));
    expect((await Promise.all(slow)).map((r) => r.text)).toEqual(Array(5).fill(""));
  });

  it.each([
    ["broken JSON", "set", '{"k":1'],
    ["an unknown key", "set", '{"k":"cc","v":"x","z":"y"}'],
    ["a number where a string belongs", "configure-ap", '{"ssid":12}'],
    ["an empty body", "set", ""],
  ])("answers a body with %s with the preamble alone (spec A.7)", async (_, name, body) => {
    const before = state.credentials.length;
    expect((await exchange(server.port, [encodeSoftApRequest({ name, body })])).text).toBe("\n\n");
    expect(log.at(-1)).toMatchObject({ outcome: "rejected" });
    expect(state.credentials).toHaveLength(before);
    await expectStillServing();
  });

  it("answers set with another key with r = -1", async () => {
    const wire = encodeSoftApRequest({ name: "set", body: '{"k":"xx","v":"abc"}' });
    expect((await exchange(server.port, [wire])).text).toBe('\n\n{"r":-1}');
  });

  it("answers a pwd that does not decrypt with a negative r and stores nothing", async () => {
    const before = state.credentials.length;
    const body = JSON.stringify({
      idx: 0,
      ssid: "x",
      sec: WIFI_SECURITY.WPA2_AES_PSK,
      ch: 1,
      pwd: "00".repeat(128),
    });
    const reply = await exchange(server.port, [encodeSoftApRequest({ name: "configure-ap", body })]);
    expect(reply.text).toBe(`\n\n{"r":${SOFTAP_RESULT_CODES.DECRYPT_FAILED}}`);
    expect(state.credentials).toHaveLength(before);
  });

  it("decrypts an upper-case pwd, as Android's lower-casing was only a workaround", async () => {
    const pwd = encryptSoftApSecret(device.publicKey, "UPPER").toUpperCase();
    const body = JSON.stringify({ idx: 0, ssid: "up", sec: WIFI_SECURITY.WPA2_AES_PSK, ch: 1, pwd });
    expect((await exchange(server.port, [encodeSoftApRequest({ name: "configure-ap", body })])).text).toBe(
      '\n\n{"r":0}',
    );
    expect(state.credentials.at(-1)).toMatchObject({ ssid: "up", password: "UPPER" });
  });
});

describe("device states the servers must survive", () => {
  it("answers public-key with r = 1 when the device has no key", async () => {
    await using server = await startSoftApTcpServer({
      state: memoryState({ privateKey: undefined }),
      port: 0,
    });
    expect((await exchange(server.port, ["public-key\n0\n\n"])).text).toBe('\n\n{"r":1}');
  });

  it("stores a pwd of fewer than 2 bytes as is, needing no key, as the firmware only decrypts longer ones", async () => {
    const state = memoryState({ privateKey: undefined });
    await using server = await startSoftApTcpServer({ state, port: 0 });
    const body = JSON.stringify({ idx: 0, ssid: "open", sec: 0, ch: 1, pwd: "" });
    expect((await exchange(server.port, [encodeSoftApRequest({ name: "configure-ap", body })])).text).toBe(
      '\n\n{"r":0}',
    );
    const encrypted = JSON.stringify({ idx: 0, ssid: "wpa", sec: 0, ch: 1, pwd: "00".repeat(128) });
    const reply = await exchange(server.port, [
      encodeSoftApRequest({ name: "configure-ap", body: encrypted }),
    ]);
    expect(reply.text).toBe(`\n\n{"r":${SOFTAP_RESULT_CODES.DECRYPT_FAILED}}`);
    expect(state.credentials.map((c) => [c.ssid, c.password])).toEqual([["open", ""]]);
  });

  it("reports a failing scan as an empty list", async () => {
    const state = memoryState();
    state.scanNetworks = () => Promise.reject(new Error("radio off"));
    await using server = await startSoftApTcpServer({ state, port: 0 });
    expect((await exchange(server.port, ["scan-ap\n0\n\n"])).text).toBe('\n\n{"scans":[]}');
  });

  it("passes the r of a failed credential store through", async () => {
    const state = memoryState();
    state.addWifiCredentials = () => -3;
    await using server = await startSoftApTcpServer({ state, port: 0 });
    const body = JSON.stringify({ idx: 0, ssid: "x", sec: 0, ch: 1 });
    expect((await exchange(server.port, [encodeSoftApRequest({ name: "configure-ap", body })])).text).toBe(
      '\n\n{"r":-3}',
    );
  });

  it("logs a throwing claim-code store as an error and sends no JSON", async () => {
    const log: SoftApLogEntry[] = [];
    const state = memoryState();
    state.setClaimCode = () => {
      throw new Error("flash full");
    };
    await using server = await startSoftApTcpServer({ state, port: 0, log: (entry) => log.push(entry) });
    const wire = encodeSoftApRequest({ name: "set", body: '{"k":"cc","v":"ab"}' });
    expect((await exchange(server.port, [wire])).text).toBe("\n\n");
    expect(log).toEqual([
      expect.objectContaining({ command: "set", outcome: "error", detail: "flash full" }) as unknown,
    ]);
  });
});

// --- the HTTP variant ---------------------------------------------------------------------------------------

describe("the HTTP server (spec A.3)", () => {
  const TIMEOUT_MS = 300;
  let server: RunningSoftApServer;
  let base: string;
  let state: MemorySetupState;
  const log: SoftApLogEntry[] = [];

  beforeAll(async () => {
    state = memoryState();
    server = await startSoftApHttpServer({
      state,
      port: 0,
      requestTimeoutMs: TIMEOUT_MS,
      maxBodyLength: 1024,
      log: (entry) => log.push(entry),
    });
    base = `http://127.0.0.1:${server.port}`;
  });
  afterAll(() => server.close());

  it("answers a command with chunked JSON, no preamble, and CORS allowed", async () => {
    const response = await fetch(`${base}/version`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/json");
    expect(response.headers.get("transfer-encoding")).toBe("chunked");
    expect(response.headers.get("access-control-allow-origin")).toBe("*");
    expect(await response.text()).toBe('{"v":2}');
  });

  it("ignores the method and the query string", async () => {
    const response = await fetch(`${base}/device-id?x=1`, { method: "PUT" });
    expect(await response.json()).toEqual({ id: DEVICE_ID.toUpperCase(), c: "0" });
  });

  it("takes a form-encoded POST body as JSON, as softap-js sends it", async () => {
    const response = await fetch(`${base}/set`, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: '{"k":"cc","v":"viahttp"}',
    });
    expect(await response.json()).toEqual({ r: 0 });
    expect(state.claimCode).toBe("viahttp");
  });

  it("answers a rejected body with an empty 200", async () => {
    const response = await fetch(`${base}/configure-ap`, { method: "POST", body: '{"ssid":"x","bogus":1}' });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("");
  });

  it("serves /hello and the redirects of / and /index, and 404 elsewhere", async () => {
    expect(await (await fetch(`${base}/hello`)).text()).toBe(SOFTAP_HELLO_TEXT);
    const root = await fetch(`${base}/`, { redirect: "manual" });
    expect([root.status, root.headers.get("location")]).toEqual([301, "/index"]);
    const index = await fetch(`${base}/index`, { redirect: "manual" });
    expect([index.status, index.headers.get("location")]).toEqual([301, "/hello"]);
    expect((await fetch(`${base}/ant-internal`)).status).toBe(404);
  });

  it("refuses a body above the limit with 413", async () => {
    const response = await fetch(`${base}/set`, { method: "POST", body: "x".repeat(2000) });
    expect(response.status).toBe(413);
    expect((await fetch(`${base}/version`)).status).toBe(200);
  });

  it("drops a client that never finishes its headers after the timeout", async () => {
    const result = await exchange(server.port, ["GET /version HTTP/1.1\r\nHost: x\r\n"]);
    expect(result.text).not.toContain('{"v":2}');
    expect(result.elapsedMs).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
    expect(result.elapsedMs).toBeLessThan(5000);
    expect(log).toContainEqual(expect.objectContaining({ transport: "http", outcome: "timeout" }));
    expect((await fetch(`${base}/version`)).status).toBe(200);
  });
});
