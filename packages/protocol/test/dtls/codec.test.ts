import { createPublicKey, verify } from "node:crypto";
import { describe, expect, it } from "vitest";

import {
  CERTIFICATE_TYPE_RAW_PUBLIC_KEY,
  CIPHER_SUITE_ECDHE_ECDSA_AES_128_CCM_8,
  CIPHER_SUITE_EMPTY_RENEGOTIATION_INFO_SCSV,
  CLIENT_CERTIFICATE_TYPE_ECDSA_SIGN,
  CONTENT_TYPE,
  decodeCertificateRequest,
  decodeCertificateVerify,
  decodeClientHello,
  decodeClientKeyExchange,
  decodeConnectionIdExtension,
  decodeDatagram,
  decodeHandshakeFragments,
  decodeHelloVerifyRequest,
  decodeRawPublicKeyCertificate,
  decodeServerHello,
  decodeServerKeyExchange,
  DTLS_1_2,
  encodeCertificateRequest,
  encodeClientHello,
  encodeConnectionIdExtension,
  encodeHandshakeFragment,
  encodeHandshakeMessage,
  encodeHelloVerifyRequest,
  encodeMoveSession,
  encodeRecord,
  encodeServerHello,
  encodeServerKeyExchange,
  EXTENSION_TYPE,
  fragmentHandshakeMessage,
  FrameTooLargeError,
  HANDSHAKE_TYPE,
  HandshakeReassembler,
  MalformedFrameError,
  NAMED_GROUP_SECP256R1,
  SIGNATURE_ECDSA_SHA256,
  TruncatedFrameError,
} from "../../src/index.js";
import type { DtlsRecord, HandshakeMessage } from "../../src/index.js";
import { hex, toHex } from "../device/hex.js";
import { V2_3_1, V5_1_0 } from "./vectors.js";

const bytes = (text: string) => hex`${text}`;

/** The one record of a datagram, and its one handshake message. */
function onlyMessage(datagram: string): { record: DtlsRecord; message: HandshakeMessage } {
  const { records } = decodeDatagram(bytes(datagram));
  expect(records).toHaveLength(1);
  const record = records[0] as DtlsRecord;
  const fragments = decodeHandshakeFragments(record.fragment);
  expect(fragments).toHaveLength(1);
  const fragment = fragments[0];
  if (!fragment) throw new Error("no fragment");
  expect(fragment.fragmentOffset).toBe(0);
  expect(fragment.body.length).toBe(fragment.length);
  return {
    record,
    message: { msgType: fragment.msgType, messageSeq: fragment.messageSeq, body: fragment.body },
  };
}

describe("DTLS records (RFC 6347 §4.1) from the real firmware's datagrams", () => {
  it("decodes the v2.3.1 ClientHello record header and encodes it back byte for byte", () => {
    const datagram = bytes(V2_3_1.clientHello1);
    const { records } = decodeDatagram(datagram);
    expect(records).toEqual([
      {
        type: CONTENT_TYPE.handshake,
        version: DTLS_1_2,
        epoch: 0,
        sequenceNumber: 0,
        fragment: datagram.subarray(13),
      },
    ]);
    expect(encodeRecord(records[0] as DtlsRecord)).toEqual(datagram);
  });

  it("splits the device's second flight into its five records: Certificate, ClientKeyExchange, CertificateVerify, ChangeCipherSpec, Finished (epoch 1)", () => {
    const datagram = bytes(V2_3_1.clientFlight);
    const { records } = decodeDatagram(datagram);
    expect(records.map((r) => [r.type, r.epoch, r.sequenceNumber, r.fragment.length])).toEqual([
      [CONTENT_TYPE.handshake, 0, 2, 106],
      [CONTENT_TYPE.handshake, 0, 3, 78],
      [CONTENT_TYPE.handshake, 0, 4, 87],
      [CONTENT_TYPE.changeCipherSpec, 0, 5, 1],
      // 8-byte explicit nonce + Finished (12-byte header + 12-byte verify_data) + 8-byte tag.
      [CONTENT_TYPE.handshake, 1, 0, 40],
    ]);
    const reencoded = new Uint8Array(Buffer.concat(records.map(encodeRecord)));
    expect(reencoded).toEqual(datagram);
  });

  it("reads a Connection ID record (type 25): the CID sits between the sequence number and the length", () => {
    const cid = hex`01 02 03 04 05 06 07 08`;
    const record: DtlsRecord = {
      type: CONTENT_TYPE.cid,
      version: DTLS_1_2,
      epoch: 1,
      sequenceNumber: 7,
      cid,
      fragment: hex`aa bb`,
    };
    const wire = encodeRecord(record);
    expect(wire).toEqual(hex`19 fefd 0001 000000000007 0102030405060708 0002 aabb`);
    expect(decodeDatagram(wire, { cidLength: 8 }).records).toEqual([record]);
  });

  it("reads type 253 (Device OS ≥ 4.0, first record after resuming) as a CID record marked afterResume", () => {
    const wire = hex`fd fefd 0001 000000000009 0102030405060708 0001 cc`;
    const [record] = decodeDatagram(wire).records;
    expect(record).toMatchObject({ type: CONTENT_TYPE.cid, afterResume: true, sequenceNumber: 9 });
    expect(encodeRecord(record as DtlsRecord)).toEqual(wire);
  });

  it("reads a move-session datagram (Device OS < 3.1): type 254, one application-data record, then the device ID and 12", () => {
    const appData = bytes(V2_3_1.hello);
    const deviceId = hex`0123456789abcdef01234567`;
    const datagram = encodeMoveSession(appData, deviceId);
    expect(datagram[0]).toBe(254);
    expect(toHex(datagram.subarray(appData.length))).toBe("0123456789abcdef012345670c");
    const decoded = decodeDatagram(datagram);
    expect(decoded.moveSessionDeviceId).toEqual(deviceId);
    expect(decoded.records).toEqual(decodeDatagram(appData).records);
    expect(decoded.records[0]?.type).toBe(CONTENT_TYPE.applicationData);
  });

  it.each([
    ["a header cut short", "16fefd0000000000", TruncatedFrameError],
    ["a length past the datagram", "16fefd00000000000000000010aabb", TruncatedFrameError],
    ["a TLS (not DTLS) version", "160303000000000000000000010a", MalformedFrameError],
    ["a move-session datagram whose last byte is not 12", `fe${"00".repeat(30)}0b`, MalformedFrameError],
  ])("refuses %s", (_name, wire, error) => {
    expect(() => decodeDatagram(bytes(wire))).toThrow(error);
  });
});

describe("DTLS handshake messages from the real firmware (RFC 6347 §4.2, RFC 5246 §7.4)", () => {
  it("decodes v2.3.1's ClientHello: DTLS 1.2, only 0xC0AE (+ SCSV), secp256r1, raw public keys both ways; and encodes it back", () => {
    const { message } = onlyMessage(V2_3_1.clientHello2);
    expect(message.msgType).toBe(HANDSHAKE_TYPE.clientHello);
    expect(message.messageSeq).toBe(1);
    const hello = decodeClientHello(message.body);
    expect(hello.version).toBe(DTLS_1_2);
    expect(hello.sessionId).toEqual(new Uint8Array(0));
    expect(toHex(hello.cookie)).toBe("6b0ed304ae06ef4f9bb3e9f242c6b0ce881ca0feb4e18cad2a624e67c8f6387a");
    expect(hello.cipherSuites).toEqual([
      CIPHER_SUITE_ECDHE_ECDSA_AES_128_CCM_8,
      CIPHER_SUITE_EMPTY_RENEGOTIATION_INFO_SCSV,
    ]);
    expect(hello.compressionMethods).toEqual([0]);
    expect(hello.extensions.map((e) => [e.type, toHex(e.data)])).toEqual([
      [EXTENSION_TYPE.signatureAlgorithms, "00080403040103030301"],
      [EXTENSION_TYPE.supportedGroups, "00020017"],
      [EXTENSION_TYPE.ecPointFormats, "0100"],
      [EXTENSION_TYPE.clientCertificateType, "0102"],
      [EXTENSION_TYPE.serverCertificateType, "0102"],
    ]);
    expect(encodeClientHello(hello)).toEqual(message.body);
    expect(encodeHandshakeMessage(message)).toEqual(
      decodeDatagram(bytes(V2_3_1.clientHello2)).records[0]?.fragment,
    );
  });

  it("finds v5.1.0's Connection ID extension 254 with an empty CID of its own (`00fe 0001 00`)", () => {
    const hello = decodeClientHello(onlyMessage(V5_1_0.clientHello2).message.body);
    const cid = hello.extensions.find((e) => e.type === EXTENSION_TYPE.connectionId);
    expect(cid && toHex(cid.data)).toBe("00");
    expect(cid && decodeConnectionIdExtension(cid.data)).toEqual(new Uint8Array(0));
    expect(encodeConnectionIdExtension(hex`0102030405060708`)).toEqual(hex`08 0102030405060708`);
  });

  it("encodes a fragment header (type, length, message_seq, offset, fragment length) and refuses a field that does not fit", () => {
    const fragment = {
      msgType: 11,
      length: 0x012345,
      messageSeq: 0x0203,
      fragmentOffset: 0x000102,
      body: hex`aabb`,
    };
    expect(encodeHandshakeFragment(fragment)).toEqual(hex`0b 012345 0203 000102 000002 aabb`);
    for (const bad of [{ messageSeq: 0x10000 }, { length: -1 }, { msgType: 256 }, { fragmentOffset: 1.5 }])
      expect(() => encodeHandshakeFragment({ ...fragment, ...bad })).toThrow(MalformedFrameError);
  });

  it("encodes a HelloVerifyRequest exactly as the one the device accepted", () => {
    const { record, message } = onlyMessage(V2_3_1.helloVerifyRequest);
    const request = decodeHelloVerifyRequest(message.body);
    expect(request.version).toBe(DTLS_1_2);
    expect(request.cookie.length).toBe(32);
    const body = encodeHelloVerifyRequest(request);
    const fragment = encodeHandshakeMessage({
      msgType: HANDSHAKE_TYPE.helloVerifyRequest,
      messageSeq: 0,
      body,
    });
    expect(encodeRecord({ ...record, fragment })).toEqual(bytes(V2_3_1.helloVerifyRequest));
  });

  it("encodes the ServerHello, ServerKeyExchange, CertificateRequest and ServerHelloDone the device accepted", () => {
    const serverHello = onlyMessage(V2_3_1.serverHello).message;
    const decodedHello = decodeServerHello(serverHello.body);
    expect(decodedHello.cipherSuite).toBe(CIPHER_SUITE_ECDHE_ECDSA_AES_128_CCM_8);
    expect(decodedHello.extensions.map((e) => [e.type, toHex(e.data)])).toEqual([
      [EXTENSION_TYPE.renegotiationInfo, "00"],
      [EXTENSION_TYPE.ecPointFormats, "0100"],
      [EXTENSION_TYPE.clientCertificateType, "02"],
      [EXTENSION_TYPE.serverCertificateType, "02"],
    ]);
    expect(encodeServerHello(decodedHello)).toEqual(serverHello.body);

    const keyExchange = onlyMessage(V2_3_1.serverKeyExchange).message;
    const decodedExchange = decodeServerKeyExchange(keyExchange.body);
    expect(decodedExchange.namedCurve).toBe(NAMED_GROUP_SECP256R1);
    expect(decodedExchange.publicKey.length).toBe(65);
    expect(decodedExchange.signed.algorithm).toBe(SIGNATURE_ECDSA_SHA256);
    expect(encodeServerKeyExchange(decodedExchange)).toEqual(keyExchange.body);

    const request = onlyMessage(V2_3_1.certificateRequest).message;
    const decodedRequest = decodeCertificateRequest(request.body);
    expect(decodedRequest).toEqual({
      certificateTypes: [CLIENT_CERTIFICATE_TYPE_ECDSA_SIGN],
      signatureAlgorithms: [SIGNATURE_ECDSA_SHA256],
      certificateAuthorities: new Uint8Array(0),
    });
    expect(encodeCertificateRequest(decodedRequest)).toEqual(request.body);

    const done = onlyMessage(V2_3_1.serverHelloDone).message;
    expect(done).toEqual({ msgType: HANDSHAKE_TYPE.serverHelloDone, messageSeq: 4, body: new Uint8Array(0) });
    expect(CERTIFICATE_TYPE_RAW_PUBLIC_KEY).toBe(2);
  });

  it.each([
    ["v2.3.1", V2_3_1],
    ["v5.1.0", V5_1_0],
  ])(
    "%s: the device's CertificateVerify verifies with its raw public key over the handshake messages from the second ClientHello on (RFC 6347 §4.2.6)",
    (_version, session) => {
      const flight = decodeDatagram(bytes(session.clientFlight)).records;
      const [certificate, keyExchange, certificateVerify] = flight
        .slice(0, 3)
        .map((record) => decodeHandshakeFragments(record.fragment)[0]);
      if (!certificate || !keyExchange || !certificateVerify) throw new Error("flight incomplete");
      expect([certificate.msgType, keyExchange.msgType, certificateVerify.msgType]).toEqual([
        HANDSHAKE_TYPE.certificate,
        HANDSHAKE_TYPE.clientKeyExchange,
        HANDSHAKE_TYPE.certificateVerify,
      ]);
      const spki = decodeRawPublicKeyCertificate(certificate.body);
      expect(spki.length).toBe(91);
      expect(decodeClientKeyExchange(keyExchange.body).length).toBe(65);
      const signed = decodeCertificateVerify(certificateVerify.body);
      expect(signed.algorithm).toBe(SIGNATURE_ECDSA_SHA256);

      const transcript = [
        session.clientHello2,
        session.serverHello,
        session.serverKeyExchange,
        session.certificateRequest,
        session.serverHelloDone,
      ].map((datagram) => encodeHandshakeMessage(onlyMessage(datagram).message));
      transcript.push(encodeHandshakeFragment(certificate), encodeHandshakeFragment(keyExchange));
      const key = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
      const data = Buffer.concat(transcript);
      expect(verify("sha256", data, key, signed.signature)).toBe(true);
      // Without the ClientHello (or with the first, cookie-less one) it does not verify.
      expect(verify("sha256", Buffer.concat(transcript.slice(1)), key, signed.signature)).toBe(false);
    },
  );
});

describe("handshake fragmentation and reassembly (RFC 6347 §4.2.3)", () => {
  const certificate = decodeHandshakeFragments(
    decodeDatagram(bytes(V2_3_1.clientFlight)).records[0]?.fragment ?? new Uint8Array(0),
  )[0];
  const message: HandshakeMessage = {
    msgType: HANDSHAKE_TYPE.certificate,
    messageSeq: 2,
    body: certificate?.body ?? new Uint8Array(0),
  };

  it("splits a message into fragments of at most the given size and puts them back, in any order and with duplicates", () => {
    const fragments = fragmentHandshakeMessage(message, 12 + 40);
    expect(fragments.map((f) => [f.fragmentOffset, f.body.length])).toEqual([
      [0, 40],
      [40, 40],
      [80, 14],
    ]);
    const reassembler = new HandshakeReassembler({ nextSeq: 2 });
    const [first, second, third] = fragments;
    if (!first || !second || !third) throw new Error("three fragments expected");
    expect(reassembler.push(third)).toEqual([]);
    expect(reassembler.push(first)).toEqual([]);
    expect(reassembler.push(first)).toEqual([]);
    expect(reassembler.push(second)).toEqual([message]);
    // A retransmission of a message already handed out is ignored.
    expect(reassembler.push(second)).toEqual([]);
    expect(reassembler.nextSeq).toBe(3);
  });

  it("holds a message that arrives early until the one before it is complete", () => {
    const reassembler = new HandshakeReassembler({ nextSeq: 0 });
    const a = { msgType: 1, length: 1, messageSeq: 0, fragmentOffset: 0, body: hex`aa` };
    const b = { msgType: 2, length: 1, messageSeq: 1, fragmentOffset: 0, body: hex`bb` };
    expect(reassembler.push(b)).toEqual([]);
    expect(reassembler.push(a).map((m) => m.messageSeq)).toEqual([0, 1]);
  });

  it.each([
    [
      "a message over the limit",
      { msgType: 11, length: 5000, messageSeq: 0, fragmentOffset: 0, body: hex`00` },
      FrameTooLargeError,
    ],
  ])("refuses %s", (_name, fragment, error) => {
    expect(() => new HandshakeReassembler().push(fragment)).toThrow(error);
  });

  it("refuses fragments of one message that disagree on its length, and a fragment past its message", () => {
    const reassembler = new HandshakeReassembler();
    reassembler.push({ msgType: 11, length: 4, messageSeq: 0, fragmentOffset: 0, body: hex`00` });
    expect(() =>
      reassembler.push({ msgType: 11, length: 5, messageSeq: 0, fragmentOffset: 1, body: hex`00` }),
    ).toThrow(MalformedFrameError);
    expect(() => decodeHandshakeFragments(hex`0b 000002 0000 000001 000002 aabb`)).toThrow(
      MalformedFrameError,
    );
  });
});
