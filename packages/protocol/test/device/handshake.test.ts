import { describe, expect, it } from "vitest";

import {
  checkDevicePublicKeyDer,
  checkServerPublicKeyDer,
  decodeHandshakePlaintext,
  decodeHandshakeReply,
  decodeSessionCredentials,
  DEVICE_PUBLIC_KEY_DER_LENGTH,
  DEVICE_PUBLIC_KEY_MODULUS_OFFSET,
  encodeHandshakePlaintext,
  encodeHandshakeReply,
  encodeSessionCredentials,
  HANDSHAKE_CIPHERTEXT_LENGTH,
  HANDSHAKE_PLAINTEXT_LENGTH,
  HANDSHAKE_PLAINTEXT_MAX_LENGTH,
  HANDSHAKE_PLAINTEXT_MIN_LENGTH,
  HANDSHAKE_REPLY_LENGTH,
  MalformedFrameError,
  messageIdSeedFromSalt,
  SERVER_PUBLIC_KEY_DER_LENGTH,
  SERVER_PUBLIC_KEY_MODULUS_OFFSET,
  SESSION_CREDENTIALS_LENGTH,
  TruncatedFrameError,
} from "../../src/index.js";
import { hex } from "./hex.js";

const NONCE = Uint8Array.from({ length: 40 }, (_, i) => i);
const DEVICE_ID_HEX = "0123456789abcdef01234567";
/** A stand-in key body; the plaintext codec does not parse it. */
const KEY_DER = Uint8Array.from({ length: 162 }, (_, i) => (i * 7) & 0xff);

/** The DER header a device writes before its 128-byte modulus (B.1: fixed 29-byte header). */
const DEVICE_SPKI_PREFIX = hex`30 81 9f 30 0d 06 09 2a 86 48 86 f7 0d 01 01 01 05 00 03 81 8d 00 30 81 89 02 81 81 00`;
/** The DER header before the server's 256-byte modulus, which the device reads at offset 33 (B.1). */
const SERVER_SPKI_PREFIX = hex`30 82 01 22 30 0d 06 09 2a 86 48 86 f7 0d 01 01 01 05 00 03 82 01 0f 00
  30 82 01 0a 02 82 01 01 00`;
const EXPONENT_65537 = hex`02 03 01 00 01`;

function spki(prefix: Uint8Array, modulus: Uint8Array): Uint8Array {
  return new Uint8Array([...prefix, ...modulus, ...EXPONENT_65537]);
}

describe("handshake constants (spec B.1, B.2)", () => {
  it.each([
    ["HANDSHAKE_PLAINTEXT_MIN_LENGTH", HANDSHAKE_PLAINTEXT_MIN_LENGTH, 52],
    ["HANDSHAKE_PLAINTEXT_LENGTH", HANDSHAKE_PLAINTEXT_LENGTH, 214],
    ["HANDSHAKE_PLAINTEXT_MAX_LENGTH", HANDSHAKE_PLAINTEXT_MAX_LENGTH, 245],
    ["HANDSHAKE_CIPHERTEXT_LENGTH", HANDSHAKE_CIPHERTEXT_LENGTH, 256],
    ["SESSION_CREDENTIALS_LENGTH", SESSION_CREDENTIALS_LENGTH, 40],
    ["HANDSHAKE_REPLY_LENGTH", HANDSHAKE_REPLY_LENGTH, 384],
    ["DEVICE_PUBLIC_KEY_DER_LENGTH", DEVICE_PUBLIC_KEY_DER_LENGTH, 162],
    ["DEVICE_PUBLIC_KEY_MODULUS_OFFSET", DEVICE_PUBLIC_KEY_MODULUS_OFFSET, 29],
    ["SERVER_PUBLIC_KEY_DER_LENGTH", SERVER_PUBLIC_KEY_DER_LENGTH, 294],
    ["SERVER_PUBLIC_KEY_MODULUS_OFFSET", SERVER_PUBLIC_KEY_MODULUS_OFFSET, 33],
  ])("derives %s = %i", (_name, actual, expected) => {
    expect(actual).toBe(expected);
  });
});

describe("handshake plaintext (spec B.2 steps 2–3)", () => {
  const vector = new Uint8Array([...NONCE, ...hex`01 23 45 67 89 ab cd ef 01 23 45 67`, ...KEY_DER]);

  it("decodes nonce || device id || key DER into lower-case hex id and key", () => {
    expect(decodeHandshakePlaintext(vector)).toEqual({
      nonce: NONCE,
      deviceId: DEVICE_ID_HEX,
      devicePublicKey: KEY_DER,
    });
  });

  it("encodes to the 214-byte layout a device sends", () => {
    const encoded = encodeHandshakePlaintext({
      nonce: NONCE,
      deviceId: DEVICE_ID_HEX,
      devicePublicKey: KEY_DER,
    });
    expect(encoded).toEqual(vector);
    expect(encoded).toHaveLength(HANDSHAKE_PLAINTEXT_LENGTH);
  });

  it("accepts an upper-case device id and decodes it back in lower case", () => {
    const encoded = encodeHandshakePlaintext({ nonce: NONCE, deviceId: DEVICE_ID_HEX.toUpperCase() });
    expect(decodeHandshakePlaintext(encoded).deviceId).toBe(DEVICE_ID_HEX);
  });

  it("accepts exactly 52 bytes as a plaintext without an embedded key", () => {
    const decoded = decodeHandshakePlaintext(vector.subarray(0, 52));
    expect(decoded.devicePublicKey).toBeUndefined();
    expect(encodeHandshakePlaintext(decoded)).toEqual(vector.subarray(0, 52));
  });

  it("accepts the plaintext when it echoes the expected nonce", () => {
    expect(decodeHandshakePlaintext(vector, { expectedNonce: NONCE }).deviceId).toBe(DEVICE_ID_HEX);
  });

  it("rejects a plaintext shorter than 52 bytes as truncated", () => {
    expect(() => decodeHandshakePlaintext(vector.subarray(0, 51))).toThrow(TruncatedFrameError);
  });

  it("rejects a plaintext longer than one RSA-2048 block can carry", () => {
    expect(() => decodeHandshakePlaintext(new Uint8Array(246))).toThrow(MalformedFrameError);
  });

  it("rejects a plaintext that echoes another nonce", () => {
    const other = NONCE.map((byte, i) => (i === 39 ? byte ^ 1 : byte));
    expect(() => decodeHandshakePlaintext(vector, { expectedNonce: other })).toThrow(
      /does not echo this connection's nonce/,
    );
  });

  it.each([
    ["a 39-byte nonce", { nonce: NONCE.subarray(0, 39), deviceId: DEVICE_ID_HEX }],
    ["a device id that is not 24 hex characters", { nonce: NONCE, deviceId: "0123" }],
    [
      "a key that overflows 245 bytes",
      { nonce: NONCE, deviceId: DEVICE_ID_HEX, devicePublicKey: new Uint8Array(194) },
    ],
  ])("refuses to encode %s", (_name, plaintext) => {
    expect(() => encodeHandshakePlaintext(plaintext)).toThrow(MalformedFrameError);
  });
});

describe("session credentials (spec B.2 step 4)", () => {
  const vector = hex`00112233445566778899aabbccddeeff | a0a1a2a3a4a5a6a7a8a9aaabacadaeaf | 3412000000000000`;
  const credentials = {
    key: hex`00112233445566778899aabbccddeeff`,
    iv: hex`a0a1a2a3a4a5a6a7a8a9aaabacadaeaf`,
    salt: hex`3412000000000000`,
  };

  it("decodes key(16) || iv(16) || salt(8)", () => {
    expect(decodeSessionCredentials(vector)).toEqual(credentials);
  });

  it("encodes to exactly the 40 bytes", () => {
    expect(encodeSessionCredentials(credentials)).toEqual(vector);
  });

  it("rejects 39 bytes as truncated", () => {
    expect(() => decodeSessionCredentials(vector.subarray(0, 39))).toThrow(TruncatedFrameError);
  });

  it("rejects 41 bytes as malformed", () => {
    expect(() => decodeSessionCredentials(new Uint8Array([...vector, 0]))).toThrow(MalformedFrameError);
  });

  it("refuses to encode a 15-byte key", () => {
    expect(() => encodeSessionCredentials({ ...credentials, key: new Uint8Array(15) })).toThrow(
      MalformedFrameError,
    );
  });

  it("seeds the device's message-id counter from salt bytes 0–1 little-endian (the Hello carries seed + 1)", () => {
    expect(messageIdSeedFromSalt(credentials.salt)).toBe(0x1234);
  });

  it("rejects a salt shorter than 2 bytes for the message-id seed", () => {
    expect(() => messageIdSeedFromSalt(hex`34`)).toThrow(TruncatedFrameError);
  });
});

describe("handshake reply layout (spec B.2 steps 4–5)", () => {
  const ciphertext = new Uint8Array(128).fill(0xc1);
  const signature = new Uint8Array(256).fill(0x51);
  const reply = new Uint8Array([...ciphertext, ...signature]);

  it("splits 384 bytes into C(128) and S(256)", () => {
    expect(decodeHandshakeReply(reply)).toEqual({ ciphertext, signature });
  });

  it("joins C and S back into the 384 wire bytes", () => {
    expect(encodeHandshakeReply({ ciphertext, signature })).toEqual(reply);
  });

  it("rejects 383 bytes as truncated", () => {
    expect(() => decodeHandshakeReply(reply.subarray(0, 383))).toThrow(TruncatedFrameError);
  });

  it("rejects 385 bytes as malformed", () => {
    expect(() => decodeHandshakeReply(new Uint8Array(385))).toThrow(MalformedFrameError);
  });
});

describe("public key DER layout (spec B.1)", () => {
  const serverModulus = new Uint8Array(256).fill(0xc3);
  const deviceModulus = new Uint8Array(128).fill(0xb5);

  it("accepts an RSA-2048 SPKI with the modulus at offset 33", () => {
    expect(() => checkServerPublicKeyDer(spki(SERVER_SPKI_PREFIX, serverModulus))).not.toThrow();
  });

  it("accepts the 162-byte RSA-1024 SPKI a device builds from its fixed 29-byte header", () => {
    expect(() => checkDevicePublicKeyDer(spki(DEVICE_SPKI_PREFIX, deviceModulus))).not.toThrow();
  });

  it.each([
    ["an RSA-1024 key where RSA-2048 is needed", spki(DEVICE_SPKI_PREFIX, deviceModulus)],
    ["a modulus whose top bit is clear", spki(SERVER_SPKI_PREFIX, new Uint8Array(256).fill(0x7f))],
    [
      "an exponent other than 65537",
      new Uint8Array([...SERVER_SPKI_PREFIX, ...serverModulus, ...hex`02 03 01 00 03`]),
    ],
    [
      "a different algorithm identifier",
      spki(
        SERVER_SPKI_PREFIX.map((b, i) => (i === 18 ? b ^ 1 : b)),
        serverModulus,
      ),
    ],
  ])("rejects %s as a server key", (_name, der) => {
    expect(() => checkServerPublicKeyDer(der)).toThrow(MalformedFrameError);
  });

  it("rejects an RSA-2048 key as a device key", () => {
    expect(() => checkDevicePublicKeyDer(spki(SERVER_SPKI_PREFIX, serverModulus))).toThrow(
      MalformedFrameError,
    );
  });
});
