import { describe, expect, it } from "vitest";

import { CONTENT_TYPE, decodeDatagram, DTLS_1_2, encodeRecord } from "../../src/index.js";
import {
  BadRecordMacError,
  deriveConnectionKeys,
  deriveMasterSecret,
  finishedVerifyData,
  openRecord,
  prfSha256,
  recordAdditionalData,
  sealRecord,
} from "../../src/node.js";
import { hex, toHex } from "../device/hex.js";

describe("TLS 1.2 PRF and keys (RFC 5246 §5, §6.3, §8.1)", () => {
  it("matches the published P_SHA256 test vector (IETF TLS list, msg03416)", () => {
    const out = prfSha256({
      secret: hex`9bbe436ba940f017b17652849a71db35`,
      label: "test label",
      seed: hex`a0ba9f936cda311827a6f796ffd5198c`,
      length: 100,
    });
    expect(toHex(out)).toBe(
      "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff70187347b66",
    );
  });

  it("cuts the CCM_8 key block into client key, server key, client IV, server IV (no MAC keys)", () => {
    const masterSecret = deriveMasterSecret({
      preMasterSecret: new Uint8Array(32).fill(1),
      clientRandom: new Uint8Array(32).fill(2),
      serverRandom: new Uint8Array(32).fill(3),
    });
    expect(masterSecret.length).toBe(48);
    const keys = deriveConnectionKeys({
      masterSecret,
      clientRandom: new Uint8Array(32).fill(2),
      serverRandom: new Uint8Array(32).fill(3),
    });
    const block = prfSha256({
      secret: masterSecret,
      label: "key expansion",
      seed: new Uint8Array([...new Uint8Array(32).fill(3), ...new Uint8Array(32).fill(2)]),
      length: 40,
    });
    expect(keys.client.key).toEqual(block.subarray(0, 16));
    expect(keys.server.key).toEqual(block.subarray(16, 32));
    expect(keys.client.iv).toEqual(block.subarray(32, 36));
    expect(keys.server.iv).toEqual(block.subarray(36, 40));
    expect(
      finishedVerifyData({ masterSecret, sender: "client", handshakeHash: new Uint8Array(32) }).length,
    ).toBe(12);
  });
});

describe("AES-128-CCM_8 records (RFC 6655, draft-ietf-tls-dtls-connection-id-05 §5)", () => {
  const keys = { key: hex`000102030405060708090a0b0c0d0e0f`, iv: hex`a0a1a2a3` };
  const content = hex`40020001b168ff0003ffff00360003000c0123456789abcdef01234567`;

  it("builds the additional data as mbedTLS 2.22 does: seq_num, type, version, [cid, cid_length], length", () => {
    expect(
      recordAdditionalData({ epoch: 1, sequenceNumber: 2, type: 23, version: DTLS_1_2, length: 29 }),
    ).toEqual(hex`0001 000000000002 17 fefd 001d`);
    expect(
      recordAdditionalData({
        epoch: 1,
        sequenceNumber: 2,
        type: 25,
        version: DTLS_1_2,
        cid: hex`0102030405060708`,
        length: 32,
      }),
    ).toEqual(hex`0001 000000000002 19 fefd 0102030405060708 08 0020`);
  });

  it("seals a record as explicit nonce (epoch and sequence number) + ciphertext + 8-byte tag, and opens it", () => {
    const record = sealRecord({
      keys,
      type: CONTENT_TYPE.applicationData,
      version: DTLS_1_2,
      epoch: 1,
      sequenceNumber: 1,
      content,
    });
    expect(record.fragment.length).toBe(8 + content.length + 8);
    expect(record.fragment.subarray(0, 8)).toEqual(hex`0001 000000000001`);
    // Same layout as the Hello the v2.3.1 firmware sent: 45 bytes for 29 bytes of CoAP.
    expect(encodeRecord(record).length).toBe(58);
    expect(openRecord({ keys, record })).toEqual({ type: CONTENT_TYPE.applicationData, content });
  });

  it("with a Connection ID: a type 25 record whose plaintext is content, real type and zeros to 16 bytes", () => {
    const cid = hex`0102030405060708`;
    const record = sealRecord({
      keys,
      type: CONTENT_TYPE.applicationData,
      version: DTLS_1_2,
      epoch: 1,
      sequenceNumber: 5,
      cid,
      content,
    });
    expect(record.type).toBe(CONTENT_TYPE.cid);
    expect(record.fragment.length).toBe(8 + 32 + 8);
    const wire = encodeRecord(record);
    const [decoded] = decodeDatagram(wire).records;
    expect(decoded && openRecord({ keys, record: decoded })).toEqual({
      type: CONTENT_TYPE.applicationData,
      content,
    });
  });

  it.each([
    ["a flipped ciphertext bit", (f: Uint8Array) => (f[10] = (f[10] ?? 0) ^ 1)],
    ["a flipped tag bit", (f: Uint8Array) => (f[f.length - 1] = (f[f.length - 1] ?? 0) ^ 1)],
    ["another sequence number in the explicit nonce", (f: Uint8Array) => (f[7] = 9)],
  ])("refuses %s as a bad record MAC", (_name, tamper) => {
    const record = sealRecord({
      keys,
      type: CONTENT_TYPE.applicationData,
      version: DTLS_1_2,
      epoch: 1,
      sequenceNumber: 1,
      content,
    });
    const fragment = record.fragment.slice();
    tamper(fragment);
    expect(() => openRecord({ keys, record: { ...record, fragment } })).toThrow(BadRecordMacError);
  });

  it("refuses a record whose header was changed (the header is in the additional data), and one too short for a tag", () => {
    const record = sealRecord({
      keys,
      type: CONTENT_TYPE.applicationData,
      version: DTLS_1_2,
      epoch: 1,
      sequenceNumber: 1,
      content,
    });
    expect(() => openRecord({ keys, record: { ...record, sequenceNumber: 2 } })).toThrow(BadRecordMacError);
    expect(() => openRecord({ keys, record: { ...record, type: CONTENT_TYPE.handshake } })).toThrow(
      BadRecordMacError,
    );
    expect(() => openRecord({ keys, record: { ...record, fragment: hex`00` } })).toThrow(BadRecordMacError);
  });
});
