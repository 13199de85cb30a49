// Scenario gen3-handshake: full DTLS handshakes of Gen 3 devices (Roost's DTLS server against the DTLS client,
// in one process, datagrams passed by hand: no sockets). The server's handshakes per CPU-second are set against
// the ceiling of its own crypto per handshake in a tight loop: one ECDSA P-256 signature (ServerKeyExchange),
// one ECDH (key generation and shared secret), one ECDSA verification (CertificateVerify).
import { createECDH, generateKeyPairSync, sign, verify } from "node:crypto";

import { DtlsServer } from "@roost/cloud";
import type { DtlsSession } from "@roost/cloud";
import { DtlsClient } from "@roost/device";

import type { ScenarioContext } from "../lib/context.js";
import type { ScenarioResult } from "../lib/report.js";
import { round } from "../lib/stats.js";

/** The share of its crypto ceiling the server should reach (the rest is codecs, PRF, AES and bookkeeping). */
const TARGET_RATIO = 0.7;

/** Handshakes per second of the server's crypto alone, for `durationMs`. */
function cryptoCeiling(durationMs: number): number {
  const server = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const device = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const peer = createECDH("prime256v1");
  const peerPoint = peer.generateKeys();
  const transcript = Buffer.alloc(700, 7);
  const deviceSignature = sign("sha256", transcript, device.privateKey);
  const started = performance.now();
  let count = 0;
  while (performance.now() - started < durationMs) {
    sign("sha256", transcript.subarray(0, 140), server.privateKey);
    const ecdh = createECDH("prime256v1");
    ecdh.generateKeys();
    ecdh.computeSecret(peerPoint);
    verify("sha256", transcript, device.publicKey, deviceSignature);
    count++;
  }
  return count / ((performance.now() - started) / 1000);
}

/** Runs the scenario. */
export async function runGen3Handshake(context: ScenarioContext): Promise<ScenarioResult> {
  const handshakes = context.quick ? 200 : 2000;
  const ceilingMs = context.quick ? 1000 : 3000;
  context.log(`gen3 crypto ceiling for ${ceilingMs} ms`);
  const ceiling = cryptoCeiling(ceilingMs);

  const serverKey = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const deviceKeys = Array.from({ length: 8 }, () => generateKeyPairSync("ec", { namedCurve: "prime256v1" }));
  const clients = new Map<number, DtlsClient>();
  let serverMs = 0;
  let completed = 0;
  const server = new DtlsServer({
    serverKey: { privateKey: serverKey.privateKey },
    send: (datagram, to) => queueMicrotask(() => clients.get(to.port)?.receive(datagram)),
    onSession: (session: DtlsSession) => {
      completed++;
      server.detach(session);
    },
  });
  context.log(`gen3: ${handshakes} full handshakes`);
  const started = performance.now();
  for (let i = 0; i < handshakes; i++) {
    const port = 10_000 + i;
    const keys = deviceKeys[i % deviceKeys.length] ?? serverKey;
    const client = new DtlsClient({
      privateKey: keys.privateKey,
      serverPublicKey: serverKey.publicKey,
      send: (datagram) =>
        queueMicrotask(() => {
          const t = performance.now();
          server.receive(datagram, { address: "127.0.0.1", port });
          serverMs += performance.now() - t;
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
    ],
    raw: { handshakes, completed, serverMs, wallMs, ceiling, perServerSecond, ratio },
  };
}
