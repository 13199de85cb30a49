// The device's public key in a full handshake: parsed once per key and kept (a reconnecting device skips the
// parse), a P-256 key imported from its point with the same result and the same rejections as the DER import,
// and every handshake's CertificateVerify still checked against the key of its own Certificate.
// @see RFC 7250 §3, RFC 5480 §2
import { createPublicKey, generateKeyPairSync } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { describe, expect, it } from "vitest";

import { DtlsClient } from "@roost/device";

import type { DtlsSession, PeerAddress } from "../src/gateway/dtls-server.js";
import { DtlsServer, parsePeerPublicKey } from "../src/gateway/dtls-server.js";

const spki = (key: KeyObject) => new Uint8Array(key.export({ format: "der", type: "spki" }));

describe("parsePeerPublicKey", () => {
  it("imports a P-256 key to the same key as the DER import, and other curves through the DER import", () => {
    for (const namedCurve of ["prime256v1", "secp384r1"]) {
      const { publicKey } = generateKeyPairSync("ec", { namedCurve });
      const parsed = parsePeerPublicKey(spki(publicKey));
      expect(parsed.equals(publicKey)).toBe(true);
      expect(parsed.asymmetricKeyDetails).toEqual({ namedCurve });
    }
  });

  it("refuses a P-256 point off the curve, a compressed point and a truncated key, as the DER import does", () => {
    const der = spki(generateKeyPairSync("ec", { namedCurve: "prime256v1" }).publicKey);
    const offCurve = der.slice();
    offCurve[offCurve.length - 1] = (offCurve[offCurve.length - 1] ?? 0) ^ 1;
    const compressedTag = der.slice();
    compressedTag[26] = 0x02;
    for (const bad of [offCurve, compressedTag, der.subarray(0, der.length - 1)]) {
      expect(() => createPublicKey({ key: Buffer.from(bad), format: "der", type: "spki" })).toThrow();
      expect(() => parsePeerPublicKey(bad)).toThrow();
    }
  });
});

describe("DtlsServer with in-process DTLS clients", () => {
  it("completes repeated handshakes of the same and of different device keys, each session with its own key", async () => {
    const serverKey = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    const deviceKeys = [0, 1].map(() => generateKeyPairSync("ec", { namedCurve: "prime256v1" }));
    const clients = new Map<number, DtlsClient>();
    const sessions: DtlsSession[] = [];
    const dropped: string[] = [];
    const server = new DtlsServer({
      serverKey: { privateKey: serverKey.privateKey },
      send: (datagram, to: PeerAddress) => queueMicrotask(() => clients.get(to.port)?.receive(datagram)),
      onSession: (session) => sessions.push(session),
      onDrop: (reason) => dropped.push(reason),
    });
    const order = [0, 0, 1, 0, 1];
    for (const [i, which] of order.entries()) {
      const port = 20_000 + i;
      const keys = deviceKeys[which] ?? serverKey;
      const client = new DtlsClient({
        privateKey: keys.privateKey,
        serverPublicKey: serverKey.publicKey,
        send: (datagram) => queueMicrotask(() => server.receive(datagram, { address: "127.0.0.1", port })),
      });
      clients.set(port, client);
      client.start();
      await client.ready;
    }
    server.close();
    expect(dropped).toEqual([]);
    expect(sessions.map((s) => Buffer.from(s.peerPublicKeyDer).toString("hex"))).toEqual(
      order.map((which) => Buffer.from(spki((deviceKeys[which] ?? serverKey).publicKey)).toString("hex")),
    );
  });
});
