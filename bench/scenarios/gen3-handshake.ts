// Scenario gen3-handshake: full DTLS handshakes of Gen 3 devices (Roost's DTLS server against the DTLS client,
// in one process, datagrams passed by hand: no sockets). The server's handshakes per CPU-second are set against
// the ceiling of its own crypto per handshake in a tight loop: one ECDSA P-256 signature (ServerKeyExchange),
// one ECDH (key generation and shared secret), one ECDSA verification (CertificateVerify).
//
// Resumptions: a device that resets resumes its saved session with one CoAP ping in a CID record, and a node
// that does not hold the session restores it from its stored state. The server's time per resumption (restore
// the session object, open the record, seal and send the ACK) is set against the ceiling of the AES-128-CCM_8
// work alone (one decryption and one encryption of the same sizes).
//
// Idle devices held: a real cloud in its own process with the UDP gateway, Gen 3 devices (CloudLink over UDP,
// one socket each) in device processes; the server's memory growth per held device after a GC.
import {
  createCipheriv,
  createDecipheriv,
  createECDH,
  generateKeyPairSync,
  randomBytes,
  sign,
  verify,
} from "node:crypto";

import { DtlsServer, DtlsSession } from "@roost/cloud";
import { DtlsClient } from "@roost/device";

import type { ScenarioContext } from "../lib/context.js";
import { launchCloud, launchFleets, sleep } from "../lib/context.js";
import { deviceIds } from "../lib/keys.js";
import type { ReportRow, ScenarioResult } from "../lib/report.js";
import { round } from "../lib/stats.js";

/** The share of its AES-CCM ceiling a resumption should reach (the rest: the session object, codecs, replay window). */
const RESUME_TARGET_RATIO = 0.3;
/** Server memory per held idle device, in bytes: the Gen 2 target (issue 3), for comparison. */
const TARGET_BYTES_PER_DEVICE = 8 * 1024;

/** Resumptions per second of the AES-128-CCM_8 work alone: open a 4-byte CoAP ping, seal a 4-byte ACK. */
function resumeCeiling(durationMs: number): number {
  const key = randomBytes(16);
  const nonce = randomBytes(12);
  const aad = randomBytes(13 + 8);
  const plaintext = Buffer.alloc(4 + 1, 1);
  const sealed = (() => {
    const cipher = createCipheriv("aes-128-ccm", key, nonce, { authTagLength: 8 });
    cipher.setAAD(aad, { plaintextLength: plaintext.length });
    return { data: Buffer.concat([cipher.update(plaintext), cipher.final()]), tag: cipher.getAuthTag() };
  })();
  const started = performance.now();
  let count = 0;
  while (performance.now() - started < durationMs) {
    const decipher = createDecipheriv("aes-128-ccm", key, nonce, { authTagLength: 8 });
    decipher.setAuthTag(sealed.tag);
    decipher.setAAD(aad, { plaintextLength: sealed.data.length });
    decipher.update(sealed.data);
    const cipher = createCipheriv("aes-128-ccm", key, nonce, { authTagLength: 8 });
    cipher.setAAD(aad.subarray(0, 13), { plaintextLength: 4 });
    cipher.update(plaintext.subarray(0, 4));
    cipher.final();
    cipher.getAuthTag();
    count++;
  }
  return count / ((performance.now() - started) / 1000);
}

/** A CoAP ping: an empty confirmable message. @see RFC 7252 §4.3 */
const coapPing = (id: number) => Uint8Array.of(0x40, 0x00, id >> 8, id & 0xff);

/** The share of its crypto ceiling the server should reach (the rest is codecs, PRF, AES and bookkeeping). */
const TARGET_RATIO = 0.7;

/** Milliseconds of CPU (user + system) in a `process.cpuUsage` difference: on a loaded machine wall time is not. */
const cpuMs = (usage: NodeJS.CpuUsage) => (usage.user + usage.system) / 1000;

/** Handshakes per second of CPU time of the server's crypto alone, for `durationMs` of wall time. */
function cryptoCeiling(durationMs: number): number {
  const server = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const device = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const peer = createECDH("prime256v1");
  const peerPoint = peer.generateKeys();
  const transcript = Buffer.alloc(700, 7);
  const deviceSignature = sign("sha256", transcript, device.privateKey);
  const started = performance.now();
  const cpu = process.cpuUsage();
  let count = 0;
  while (performance.now() - started < durationMs) {
    sign("sha256", transcript.subarray(0, 140), server.privateKey);
    const ecdh = createECDH("prime256v1");
    ecdh.generateKeys();
    ecdh.computeSecret(peerPoint);
    verify("sha256", transcript, device.publicKey, deviceSignature);
    count++;
  }
  return count / (cpuMs(process.cpuUsage(cpu)) / 1000);
}

/** Runs the scenario. */
export async function runGen3Handshake(context: ScenarioContext): Promise<ScenarioResult> {
  const handshakes = context.quick ? 200 : 2000;
  const ceilingMs = context.quick ? 1000 : 3000;
  context.log(`gen3 crypto ceiling for ${ceilingMs} ms`);
  const ceiling = cryptoCeiling(ceilingMs);

  const serverKey = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  /** Handshakes run first and not counted, so that the counted ones run optimised code. */
  const warmUp = context.quick ? 50 : 200;
  // One key per device: every handshake is a device this server has not seen (as after a restart), so the
  // server's cache of parsed device keys never helps here.
  const deviceKeys = Array.from({ length: warmUp + handshakes }, () =>
    generateKeyPairSync("ec", { namedCurve: "prime256v1" }),
  );
  const clients = new Map<number, DtlsClient>();
  let serverMs = 0;
  let completed = 0;
  /** A few established sessions, both sides, for the resumptions. */
  const established: { client: DtlsClient; session: DtlsSession; port: number }[] = [];
  const server = new DtlsServer({
    serverKey: { privateKey: serverKey.privateKey },
    send: (datagram, to) => queueMicrotask(() => clients.get(to.port)?.receive(datagram)),
    onSession: (session: DtlsSession) => {
      completed++;
      server.detach(session);
      const client = clients.get(session.address.port);
      if (client && established.length < 64)
        established.push({ client, session, port: session.address.port });
    },
  });
  context.log(`gen3: ${warmUp} warm-up and ${handshakes} counted full handshakes`);
  let started = performance.now();
  for (let i = 0; i < warmUp + handshakes; i++) {
    if (i === warmUp) {
      serverMs = 0;
      completed = 0;
      started = performance.now();
    }
    const port = 10_000 + i;
    const keys = deviceKeys[i] ?? serverKey;
    const client = new DtlsClient({
      privateKey: keys.privateKey,
      serverPublicKey: serverKey.publicKey,
      send: (datagram) =>
        queueMicrotask(() => {
          const cpu = process.cpuUsage();
          server.receive(datagram, { address: "127.0.0.1", port });
          serverMs += cpuMs(process.cpuUsage(cpu));
        }),
    });
    clients.set(port, client);
    client.start();
    await client.ready;
    clients.delete(port);
  }
  const wallMs = performance.now() - started;
  server.close();
  const perServerSecond = completed / (serverMs / 1000);
  const ratio = perServerSecond / ceiling;

  const resumed = measureResumptions(context, server, established);
  const held = await measureHeld(context);
  return {
    name: "gen3-handshake",
    profiles: [],
    rows: [
      {
        scenario: "gen3-handshake",
        figure: "Gen 3 handshakes/s per server core",
        value: `${round(perServerSecond)} /s`,
        limit: `${round(ceiling)} /s (P-256 sign + ECDH + verify)`,
        ratio,
        target: { better: "higher", ratio: TARGET_RATIO },
      },
      {
        scenario: "gen3-handshake",
        figure: "server CPU per Gen 3 handshake",
        value: `${round(serverMs / completed, 3)} ms`,
        limit: `${round(1000 / ceiling, 3)} ms (its crypto)`,
      },
      ...resumed.rows,
      ...held.rows,
    ],
    raw: {
      handshakes,
      completed,
      serverMs,
      wallMs,
      ceiling,
      perServerSecond,
      ratio,
      resumptions: resumed.raw,
      held: held.raw,
    },
  };
}

/**
 * Resumptions as a node that does not hold the session sees them: the device (a resumed `DtlsClient`, new
 * sequence numbers) sends a CoAP ping in a CID record; the server restores the session object from its state,
 * attaches it, opens the record and answers with the ACK. The server's time covers restore, receive and send.
 */
function measureResumptions(
  context: ScenarioContext,
  server: DtlsServer,
  established: readonly { client: DtlsClient; session: DtlsSession; port: number }[],
): { rows: ReportRow[]; raw: Record<string, unknown> } {
  const count = context.quick ? 2000 : 20_000;
  const ceilingMs = context.quick ? 1000 : 3000;
  context.log(`gen3 resumption ceiling (AES-128-CCM_8 open + seal) for ${ceilingMs} ms`);
  const ceiling = resumeCeiling(ceilingMs);
  if (established.length === 0) throw new Error("no established session to resume");
  context.log(`gen3: ${count} resumptions over ${established.length} sessions`);
  let serverMs = 0;
  let answered = 0;
  const states = established.map((entry) => ({
    port: entry.port,
    state: entry.session.state,
    saved: entry.client.session,
  }));
  for (let i = 0; i < count; i++) {
    const entry = states[i % states.length];
    if (!entry?.saved) throw new Error("a client without a saved session");
    // The device's saved session, continued after its reservation (as after a reset).
    let reply: Uint8Array | undefined;
    const client = DtlsClient.resume(
      {
        privateKey: serverKeyPlaceholder,
        serverPublicKey: serverKeyPlaceholder,
        send: (datagram) => {
          reply = datagram;
        },
      },
      entry.saved,
    );
    client.send(coapPing(i & 0xffff));
    const datagram = reply;
    if (!datagram) throw new Error("the resumed client sent nothing");
    let answer: Uint8Array | undefined;
    const t = performance.now();
    // A node without the session in memory: restore it from its state, then take the record.
    const session = new DtlsSession({
      state: entry.state,
      address: { address: "127.0.0.1", port: entry.port },
      send: (bytes) => {
        answer = bytes;
      },
    });
    session.onData = (content) => session.send(Uint8Array.of(0x60, 0x00, content[2] ?? 0, content[3] ?? 0));
    server.attach(session);
    server.receive(datagram, { address: "127.0.0.1", port: entry.port + 1 });
    server.detach(session);
    serverMs += performance.now() - t;
    if (!answer) continue;
    let acked = false;
    client.onData = () => (acked = true);
    client.receive(answer);
    if (acked) answered++;
    // Its next resumption continues after this one's sequence numbers.
    entry.saved = client.session;
    entry.state = { ...session.state, outSequence: session.reservedUntil };
  }
  const perServerSecond = answered / (serverMs / 1000);
  const ratio = perServerSecond / ceiling;
  return {
    rows: [
      {
        scenario: "gen3-handshake",
        figure: "Gen 3 resumptions/s per server core",
        value: `${round(perServerSecond)} /s`,
        limit: `${round(ceiling)} /s (AES-128-CCM_8 open + seal)`,
        ratio,
        target: { better: "higher", ratio: RESUME_TARGET_RATIO },
      },
    ],
    raw: { count, answered, serverMs, ceiling, perServerSecond, ratio },
  };
}

/** Resumed clients never sign or verify: any key object does. */
const serverKeyPlaceholder = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey;

/**
 * Idle Gen 3 devices held by a real cloud process: devices connect over UDP (full handshake, Hello, connect
 * sequence) from device processes and stay; the server's RSS growth per device after a GC.
 */
async function measureHeld(
  context: ScenarioContext,
): Promise<{ rows: ReportRow[]; raw: Record<string, unknown> }> {
  const devices = context.quick ? 300 : 3000;
  const warmup = context.quick ? 50 : 200;
  const pingIntervalMs = context.quick ? 2000 : 15_000;
  const keys = Array.from({ length: 8 }, () => {
    const pair = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    return {
      privateKeyPem: pair.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
      publicKeyPem: pair.publicKey.export({ type: "spki", format: "pem" }).toString(),
    };
  });
  const assigned = deviceIds(warmup + devices).map((id, index) => ({ id, key: index % keys.length }));
  const cloud = await launchCloud(context, {
    scenario: "gen3-handshake",
    params: { udp: true, ...(context.quick ? { idleTimeoutMs: 10_000 } : {}) },
  });
  const fleets = launchFleets(Math.max(1, context.machine.cores - 1));
  const server = cloud.process;
  try {
    for (let start = 0; start < assigned.length; start += 5000)
      await server.call("insertDevices", {
        keys: keys.map((key) => key.publicKeyPem),
        devices: assigned.slice(start, start + 5000),
        algorithm: "ecc",
        platformId: 32,
      });
    const udpCloud = {
      ...cloud,
      address: {
        ...cloud.address,
        gatewayPort: cloud.address.udpPort ?? 0,
        serverPublicKeyPem: cloud.address.serverEcPublicKeyPem ?? "",
      },
    };
    const connect = (slice: typeof assigned) =>
      Promise.all(
        fleets.map((fleet, index) =>
          fleet.call("connect", {
            host: "127.0.0.1",
            port: udpCloud.address.gatewayPort,
            serverPublicKeyPem: udpCloud.address.serverPublicKeyPem,
            keys: keys.map((key) => key.privateKeyPem),
            devices: slice.filter((_, i) => i % fleets.length === index),
            concurrency: 32,
            pingIntervalMs,
            gen3: { platformId: 32 },
          }),
        ),
      ).then((lists) => lists.flat());
    context.log(`gen3: warm-up with ${warmup} devices over UDP`);
    // The warm-up devices stay: a device that goes away quietly is held until its idle timeout, which would
    // shrink the server during the measurement.
    await connect(assigned.slice(0, warmup));
    await sleep(1000);
    const baseline = await server.call("stats", { gc: true });
    context.log(`gen3: ${devices} idle devices over UDP`);
    const connectStarted = performance.now();
    const results = await connect(assigned.slice(warmup));
    const connectMs = performance.now() - connectStarted;
    const failures = results.filter((result) => result.error !== undefined).length;
    // Hold through a few pings, then measure.
    await sleep(pingIntervalMs * 2 + 500);
    const memory = await server.call("stats", { gc: true });
    const reports = await Promise.all(fleets.map((fleet) => fleet.call("pings", {})));
    const connected = reports.reduce((sum, report) => sum + report.connected, 0) - warmup;
    const dropped = reports.reduce((sum, report) => sum + report.disconnected, 0);
    const dropReasons: Record<string, number> = {};
    for (const report of reports)
      for (const [reason, count] of Object.entries(report.disconnectReasons))
        dropReasons[reason] = (dropReasons[reason] ?? 0) + count;
    const bytesPerDevice = (memory.rssBytes - baseline.rssBytes) / devices;
    const heapPerDevice = (memory.heapUsedBytes - baseline.heapUsedBytes) / devices;
    context.log(
      `gen3: ${connected} of ${devices} held (${failures} failed, ${dropped} dropped), ` +
        `${round(bytesPerDevice / 1024, 2)} KiB RSS and ${round(heapPerDevice / 1024, 2)} KiB heap per device`,
    );
    return {
      rows: [
        {
          scenario: "gen3-handshake",
          figure: "idle Gen 3 devices held",
          value: `${connected}`,
          limit: `${devices} connected`,
          ratio: connected / devices,
          target: { better: "higher", ratio: 1 },
        },
        {
          scenario: "gen3-handshake",
          figure: `server memory per Gen 3 device at ${devices}`,
          value: `${round(bytesPerDevice / 1024, 2)} KiB (heap ${round(heapPerDevice / 1024, 2)} KiB)`,
          limit: `${TARGET_BYTES_PER_DEVICE / 1024} KiB (Gen 2 target)`,
          ratio: bytesPerDevice / TARGET_BYTES_PER_DEVICE,
          target: { better: "lower", ratio: 1 },
        },
      ],
      raw: {
        devices,
        connected,
        failures,
        dropped,
        dropReasons,
        connectMs,
        pingIntervalMs,
        baselineRssBytes: baseline.rssBytes,
        rssBytes: memory.rssBytes,
        bytesPerDevice,
        heapPerDevice,
        serverHandshakes: memory.dtlsHandshakes,
      },
    };
  } finally {
    await Promise.all(fleets.map((fleet) => fleet.exit(20_000)));
    await server.exit(20_000);
  }
}
