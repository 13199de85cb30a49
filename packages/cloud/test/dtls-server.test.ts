// The DTLS server's behaviour towards unauthenticated input, driven with the real firmware's ClientHellos
// (/work/shared/devos/traces): no state and no amplification before the cookie, a bounded number of handshakes,
// the CID given when asked, a ServerKeyExchange signed by the server key, garbage dropped with a reason.
// @see RFC 6347 §4.2.1, docs/gen3-wire-format.md §3
import { generateKeyPairSync, randomBytes, verify } from "node:crypto";
import { describe, expect, it } from "vitest";

import {
  CONTENT_TYPE,
  decodeClientHello,
  decodeConnectionIdExtension,
  decodeDatagram,
  decodeHandshakeFragments,
  decodeHelloVerifyRequest,
  decodeServerHello,
  decodeServerKeyExchange,
  DTLS_1_2,
  encodeClientHello,
  encodeHandshakeMessage,
  encodeMoveSession,
  encodeRecord,
  encodeServerEcdhParams,
  EXTENSION_TYPE,
  HANDSHAKE_TYPE,
} from "@roost/protocol";
import { sealRecord } from "@roost/protocol/node";

import type { DtlsSessionState, PeerAddress } from "../src/gateway/dtls-server.js";
import { DtlsServer, DtlsSession } from "../src/gateway/dtls-server.js";

/** The first ClientHello of v2.3.1 and of v5.1.0 (with the CID extension), as the firmware sent them. */
const CLIENT_HELLO = {
  "v2.3.1":
    "16fefd00000000000000000062010000560000000000000056fefd6a3a22e4cbda88db3c7afa7476f75e6fd062be161cf2053e97276d9b2912d71500000004c0ae00ff01000028000d000a00080403040103030301000a000400020017000b00020100001300020102001400020102",
  "v5.1.0":
    "16fefd000000000000000000670100005b000000000000005bfefdbed1ec723e691a6c79f21bd4a5ef9f03ed25370b58d3ddd1e9ac25733021185000000004c0ae00ff0100002d000d000a00080403040103030301000a000400020017000b0002010000fe000100001300020102001400020102",
} as const;

const DEVICE: PeerAddress = { address: "127.0.0.1", port: 40_000 };

function server(options: { maxHandshakesPerAddress?: number } = {}) {
  const key = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const sent: { datagram: Uint8Array; to: PeerAddress }[] = [];
  const dropped: string[] = [];
  const dtls = new DtlsServer({
    serverKey: { privateKey: key.privateKey },
    send: (datagram, to) => sent.push({ datagram, to }),
    onSession: () => undefined,
    onDrop: (reason) => dropped.push(reason),
    retransmitMs: 60_000,
    ...options,
  });
  return { dtls, sent, dropped, publicKey: key.publicKey };
}

/** The ClientHello datagram again, with `cookie` (record sequence 1, message_seq 1, as the firmware does). */
function withCookie(datagram: string, cookie: Uint8Array): Uint8Array {
  const [record] = decodeDatagram(Buffer.from(datagram, "hex")).records;
  const [fragment] = decodeHandshakeFragments(record?.fragment ?? new Uint8Array(0));
  const hello = decodeClientHello(fragment?.body ?? new Uint8Array(0));
  const body = encodeClientHello({ ...hello, cookie });
  return encodeRecord({
    type: CONTENT_TYPE.handshake,
    version: record?.version ?? 0,
    epoch: 0,
    sequenceNumber: 1,
    fragment: encodeHandshakeMessage({ msgType: HANDSHAKE_TYPE.clientHello, messageSeq: 1, body }),
  });
}

function cookieOf(datagram: Uint8Array): Uint8Array {
  const [record] = decodeDatagram(datagram).records;
  const [fragment] = decodeHandshakeFragments(record?.fragment ?? new Uint8Array(0));
  expect(fragment?.msgType).toBe(HANDSHAKE_TYPE.helloVerifyRequest);
  return decodeHelloVerifyRequest(fragment?.body ?? new Uint8Array(0)).cookie;
}

describe("DTLS server (RFC 6347 §4.2.1)", () => {
  it("answers a ClientHello without a cookie with one HelloVerifyRequest no larger than it, and keeps no state", () => {
    const { dtls, sent } = server();
    const hello = Buffer.from(CLIENT_HELLO["v2.3.1"], "hex");
    dtls.receive(hello, DEVICE);
    expect(sent).toHaveLength(1);
    expect(sent[0]?.datagram.length).toBeLessThanOrEqual(hello.length);
    expect(cookieOf(sent[0]?.datagram ?? new Uint8Array(0))).toHaveLength(32);
    expect(dtls.handshakesInProgress).toBe(0);
  });

  it("answers a wrong cookie, or the right cookie from another port, with a new HelloVerifyRequest and no state", () => {
    const { dtls, sent } = server();
    dtls.receive(Buffer.from(CLIENT_HELLO["v2.3.1"], "hex"), DEVICE);
    const cookie = cookieOf(sent[0]?.datagram ?? new Uint8Array(0));
    const wrong = cookie.slice();
    wrong[0] = (wrong[0] ?? 0) ^ 1;
    dtls.receive(withCookie(CLIENT_HELLO["v2.3.1"], wrong), DEVICE);
    dtls.receive(withCookie(CLIENT_HELLO["v2.3.1"], cookie), { ...DEVICE, port: DEVICE.port + 1 });
    expect(sent.map((s) => cookieOf(s.datagram).length)).toEqual([32, 32, 32]);
    expect(dtls.handshakesInProgress).toBe(0);
  });

  it.each(["v2.3.1", "v5.1.0"] as const)(
    "%s: with its cookie, answers ServerHello (with an 8-byte CID only when asked), a ServerKeyExchange signed by the server key, CertificateRequest and ServerHelloDone",
    (version) => {
      const { dtls, sent, publicKey } = server();
      dtls.receive(Buffer.from(CLIENT_HELLO[version], "hex"), DEVICE);
      const second = withCookie(CLIENT_HELLO[version], cookieOf(sent[0]?.datagram ?? new Uint8Array(0)));
      dtls.receive(second, DEVICE);
      expect(dtls.handshakesInProgress).toBe(1);
      const flight = decodeDatagram(sent[1]?.datagram ?? new Uint8Array(0)).records.map(
        (record) => decodeHandshakeFragments(record.fragment)[0],
      );
      expect(flight.map((f) => [f?.msgType, f?.messageSeq])).toEqual([
        [HANDSHAKE_TYPE.serverHello, 1],
        [HANDSHAKE_TYPE.serverKeyExchange, 2],
        [HANDSHAKE_TYPE.certificateRequest, 3],
        [HANDSHAKE_TYPE.serverHelloDone, 4],
      ]);
      const serverHello = decodeServerHello(flight[0]?.body ?? new Uint8Array(0));
      const cid = serverHello.extensions.find((e) => e.type === EXTENSION_TYPE.connectionId);
      if (version === "v5.1.0") expect(cid && decodeConnectionIdExtension(cid.data)).toHaveLength(8);
      else expect(cid).toBeUndefined();
      const exchange = decodeServerKeyExchange(flight[1]?.body ?? new Uint8Array(0));
      const clientRandom = decodeClientHello(
        decodeHandshakeFragments(decodeDatagram(second).records[0]?.fragment ?? new Uint8Array(0))[0]?.body ??
          new Uint8Array(0),
      ).random;
      const signed = Buffer.concat([clientRandom, serverHello.random, encodeServerEcdhParams(exchange)]);
      expect(verify("sha256", signed, publicKey, exchange.signed.signature)).toBe(true);

      // The same ClientHello again (our flight was lost): the same flight again, still one handshake.
      dtls.receive(second, DEVICE);
      expect(sent[2]?.datagram).toEqual(sent[1]?.datagram);
      expect(dtls.handshakesInProgress).toBe(1);
      dtls.close();
    },
  );

  it("holds at most maxHandshakesPerAddress handshakes for one IP address", () => {
    const { dtls, sent, dropped } = server({ maxHandshakesPerAddress: 2 });
    for (let port = 1; port <= 3; port++) {
      const from = { address: "127.0.0.9", port };
      dtls.receive(Buffer.from(CLIENT_HELLO["v2.3.1"], "hex"), from);
      dtls.receive(
        withCookie(CLIENT_HELLO["v2.3.1"], cookieOf(sent.at(-1)?.datagram ?? new Uint8Array(0))),
        from,
      );
    }
    expect(dtls.handshakesInProgress).toBe(2);
    expect(dropped).toContain("too many handshakes in progress");
    dtls.close();
  });

  it.each([
    ["a datagram that is not DTLS", Buffer.from("hello world, not dtls"), /undecodable datagram/],
    ["a truncated record", Buffer.from("16fefd000000000000", "hex"), /undecodable datagram/],
    [
      "application data from no known session",
      Buffer.from("17fefd00010000000000010004deadbeef", "hex"),
      /no known session/,
    ],
    [
      "a record with an unknown connection ID",
      Buffer.from(`19fefd0001000000000001${"00".repeat(8)}0004deadbeef`, "hex"),
      /unknown connection ID/,
    ],
    [
      "a Certificate before any ClientHello",
      Buffer.from("16fefd00000000000000020010" + "0b000004000200000000000400000100", "hex"),
      /without a ClientHello/,
    ],
  ])("drops %s with a reason and answers nothing", (_name, datagram, reason) => {
    const { dtls, sent, dropped } = server();
    dtls.receive(datagram, DEVICE);
    expect(sent).toEqual([]);
    expect(dropped.join("\n")).toMatch(reason);
  });

  it("ignores the 0- and 1-byte keep-alive datagrams Device OS sends", () => {
    const { dtls, sent, dropped } = server();
    dtls.receive(new Uint8Array(0), DEVICE);
    dtls.receive(Uint8Array.of(0), DEVICE);
    expect([sent, dropped]).toEqual([[], []]);
  });
});

describe("records of sessions the server does not hold (another node's, stored)", () => {
  const key = () => ({ key: randomBytes(16), iv: randomBytes(4) });
  const state: DtlsSessionState = {
    keys: { client: key(), server: key() },
    masterSecret: randomBytes(48),
    cid: new Uint8Array(randomBytes(8)),
    peerPublicKeyDer: new Uint8Array(0),
    epoch: 1,
    outSequence: 5000,
    inSequence: 7,
  };
  const deviceRecord = (options: { cid?: Uint8Array; sequenceNumber: number }) =>
    encodeRecord(
      sealRecord({
        keys: state.keys.client,
        type: CONTENT_TYPE.applicationData,
        version: DTLS_1_2,
        epoch: 1,
        sequenceNumber: options.sequenceNumber,
        cid: options.cid,
        content: Uint8Array.of(0x40, 0, 0, 1),
      }),
    );

  function withHook() {
    const unknown: { cid?: Uint8Array; deviceId?: Uint8Array }[] = [];
    const dropped: string[] = [];
    const dtls = new DtlsServer({
      serverKey: { privateKey: generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey },
      send: () => undefined,
      onSession: () => undefined,
      onDrop: (reason) => dropped.push(reason),
      onUnknownSession: (found) => {
        unknown.push(found);
        return true;
      },
    });
    const received: Uint8Array[] = [];
    const session = new DtlsSession({ state, address: DEVICE, send: () => undefined });
    session.onData = (content) => received.push(content);
    return { dtls, unknown, dropped, session, received };
  }

  it("hands a record with an unknown CID to onUnknownSession; fed again once the session is attached, it is served", () => {
    const { dtls, unknown, dropped, session, received } = withHook();
    const datagram = deviceRecord({ cid: state.cid, sequenceNumber: 8 });
    dtls.receive(datagram, DEVICE);
    expect(unknown).toEqual([{ cid: state.cid }]);
    expect(received).toEqual([]);
    dtls.attach(session);
    dtls.receive(datagram, DEVICE);
    expect(received).toEqual([Uint8Array.of(0x40, 0, 0, 1)]);
    expect(unknown).toHaveLength(1);
    expect(dropped).toEqual([]);
  });

  it("hands a move-session record of a device it does not hold to onUnknownSession, with the device ID", () => {
    const { dtls, unknown, session, received } = withHook();
    const deviceId = randomBytes(12);
    const datagram = encodeMoveSession(deviceRecord({ sequenceNumber: 9 }), deviceId);
    dtls.receive(datagram, { address: "127.0.0.2", port: 1234 }, () => undefined);
    expect(unknown).toEqual([{ deviceId: new Uint8Array(deviceId) }]);
    dtls.attach(session);
    dtls.receive(datagram, { address: "127.0.0.2", port: 1234 }, () => session);
    expect(received).toHaveLength(1);
    expect(session.address).toEqual({ address: "127.0.0.2", port: 1234 });
  });

  it("drops a forged record with a known CID without disturbing the session", () => {
    const { dtls, dropped, session, received } = withHook();
    dtls.attach(session);
    const forged = deviceRecord({ cid: state.cid, sequenceNumber: 10 });
    forged[forged.length - 1] = (forged[forged.length - 1] ?? 0) ^ 1;
    dtls.receive(forged, { address: "127.0.0.3", port: 1 });
    expect(received).toEqual([]);
    expect(dropped).toEqual(["record dropped by its session"]);
    expect(session.address).toEqual(DEVICE);
  });
});
