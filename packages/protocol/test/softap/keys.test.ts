import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";

import {
  decodeDeviceHex,
  decodeSoftApPublicKey,
  encodeSoftApPublicKey,
  MalformedFrameError,
  removePkcs7Padding,
  SOFTAP_PUBLIC_KEY_HEX_LENGTH,
  SOFTAP_PUBLIC_KEY_PKCS1_OFFSET,
  SOFTAP_PUBLIC_KEY_SLOT_LENGTH,
  toUpperHex,
  TruncatedFrameError,
} from "../../src/index.js";
import {
  decryptSoftApPrivateKey,
  decryptSoftApSecret,
  encryptSoftApPrivateKey,
  encryptSoftApSecret,
  exportPublicKeyDer,
  importSoftApPublicKey,
  openSoftApPassword,
  SOFTAP_KIV_LENGTH,
} from "../../src/node.js";

const device = generateKeyPairSync("rsa", { modulusLength: 1024, publicExponent: 65537 });
const other = generateKeyPairSync("rsa", { modulusLength: 1024, publicExponent: 65537 });
const der = exportPublicKeyDer(device.publicKey);
const hexOf = (bytes: Uint8Array): string => toUpperHex(bytes);

describe("public-key dump (spec A.4 public-key, A.6)", () => {
  /** SEQUENCE, rsaEncryption AlgorithmIdentifier, BIT STRING, RSAPublicKey SEQUENCE, INTEGER of 129 bytes. */
  const RSA_1024_SPKI_HEADER = "30819F300D06092A864886F70D010101050003818D0030818902818100";

  it("dumps the 294-byte slot as 588 upper-case hex characters", () => {
    const b = encodeSoftApPublicKey(der);
    expect(b).toHaveLength(SOFTAP_PUBLIC_KEY_HEX_LENGTH);
    expect(SOFTAP_PUBLIC_KEY_HEX_LENGTH).toBe(588);
    expect(b).toMatch(/^[0-9A-F]+$/);
    expect(b.startsWith(RSA_1024_SPKI_HEADER)).toBe(true);
    expect(b.slice(0, der.length * 2)).toBe(hexOf(der));
  });

  it("fills the 132 bytes after the 162-byte key with zeros, or the given byte", () => {
    expect(encodeSoftApPublicKey(der).slice(der.length * 2)).toBe(
      "00".repeat(SOFTAP_PUBLIC_KEY_SLOT_LENGTH - 162),
    );
    expect(encodeSoftApPublicKey(der, { fill: 0xff }).slice(der.length * 2)).toBe("FF".repeat(132));
  });

  it("reads the key back from the dump, ignoring the slot padding like Android", () => {
    expect(decodeSoftApPublicKey(encodeSoftApPublicKey(der, { fill: 0xff }))).toEqual({
      spki: der,
      pkcs1: der.slice(SOFTAP_PUBLIC_KEY_PKCS1_OFFSET),
    });
  });

  it("finds the PKCS#1 key at byte 22, where softap-js cuts", () => {
    expect(SOFTAP_PUBLIC_KEY_PKCS1_OFFSET).toBe(22);
    expect(hexOf(decodeSoftApPublicKey(encodeSoftApPublicKey(der)).pkcs1).slice(0, 6)).toBe("308189");
  });

  it("accepts lower-case hex", () => {
    expect(decodeSoftApPublicKey(encodeSoftApPublicKey(der).toLowerCase()).spki).toEqual(der);
  });

  it("imports the dump as a key that encrypts for the device", () => {
    const key = importSoftApPublicKey(encodeSoftApPublicKey(der));
    expect(exportPublicKeyDer(key)).toEqual(der);
  });

  it("refuses to dump an RSA-2048 key, which softap-js would cut at the wrong place", () => {
    const big = generateKeyPairSync("rsa", { modulusLength: 2048 });
    expect(() => encodeSoftApPublicKey(exportPublicKeyDer(big.publicKey))).toThrow(MalformedFrameError);
  });

  it.each([
    ["odd-length hex", "ABC", MalformedFrameError],
    ["non-hex characters", "ZZ", MalformedFrameError],
    ["an empty dump", "", TruncatedFrameError],
    ["a dump that is not a SEQUENCE", `02${"00".repeat(200)}`, MalformedFrameError],
    ["a dump cut inside the key", hexOf(der.subarray(0, 100)), TruncatedFrameError],
    ["a dump with a four-byte DER length", `3084000000A2${"00".repeat(200)}`, MalformedFrameError],
    ["a SEQUENCE that is not an RSA-1024 key", `3003020100${"00".repeat(10)}`, MalformedFrameError],
  ])("rejects %s", (_, b, error) => {
    expect(() => decodeSoftApPublicKey(b)).toThrow(error);
  });
});

describe("device hex (spec A.6)", () => {
  it.each([
    ["0aFf", [0x0a, 0xff]],
    ["abc", [0xab, 0xc0]],
    [":1", [0x31]],
    ["g0", [0x00]],
    ["~~", [0x00]],
    ["", []],
  ])("decodes %j leniently, as hex_nibble does", (text, bytes) => {
    expect(decodeDeviceHex(text, 256)).toEqual(Uint8Array.from(bytes));
  });

  it("stops after maxLength bytes", () => {
    expect(decodeDeviceHex("0102030405", 2)).toEqual(Uint8Array.of(1, 2));
  });

  it("writes upper case, like bytes2hexbuf", () => {
    expect(toUpperHex(Uint8Array.of(0x00, 0xab, 0x7f))).toBe("00AB7F");
  });
});

describe("pwd encryption (spec A.6)", () => {
  it("encrypts to 256 lower-case hex characters that the device decrypts", () => {
    const pwd = encryptSoftApSecret(device.publicKey, "hunter2");
    expect(pwd).toMatch(/^[0-9a-f]{256}$/);
    expect(openSoftApPassword(device.privateKey, pwd)).toBe("hunter2");
  });

  it("decrypts upper-case hex too", () => {
    const pwd = encryptSoftApSecret(device.publicKey, "pässwörd");
    expect(openSoftApPassword(device.privateKey, pwd.toUpperCase())).toBe("pässwörd");
  });

  it("reads no more than 256 ciphertext bytes, so trailing hex is ignored", () => {
    const pwd = encryptSoftApSecret(device.publicKey, "x");
    expect(openSoftApPassword(device.privateKey, pwd + "ff".repeat(300))).toBe("x");
  });

  it("cuts the password at the first NUL, as a C string", () => {
    expect(openSoftApPassword(device.privateKey, encryptSoftApSecret(device.publicKey, "abc\0def"))).toBe(
      "abc",
    );
  });

  it.each(["", "a"])("passes a pwd of fewer than 2 bytes (%j) through undecrypted", (pwd) => {
    expect(openSoftApPassword(device.privateKey, pwd)).toBe(pwd);
  });

  it("rejects a ciphertext shorter than one RSA block", () => {
    expect(() => decryptSoftApSecret(device.privateKey, "ab".repeat(100))).toThrow(MalformedFrameError);
  });

  it("rejects a ciphertext for another key", () => {
    expect(() => openSoftApPassword(device.privateKey, encryptSoftApSecret(other.publicKey, "x"))).toThrow(
      MalformedFrameError,
    );
  });

  it("rejects a secret too long for one block", () => {
    expect(() => encryptSoftApSecret(device.publicKey, "x".repeat(118))).toThrow(MalformedFrameError);
  });
});

describe("EAP-TLS private key (spec A.6)", () => {
  const pem = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\r\n";
  const kiv = Uint8Array.from({ length: SOFTAP_KIV_LENGTH }, (_, i) => i);

  it("round-trips, leaving the PKCS#7 padding in place as the device does", () => {
    const sealed = encryptSoftApPrivateKey({ publicKey: device.publicKey, privateKeyPem: pem, kiv });
    const opened = decryptSoftApPrivateKey({ privateKey: device.privateKey, ...sealed });
    expect(opened.length % 16).toBe(0);
    expect(new TextDecoder().decode(removePkcs7Padding(opened))).toBe(pem);
  });

  it("rejects a kiv that is not 32 bytes", () => {
    expect(() =>
      encryptSoftApPrivateKey({ publicKey: device.publicKey, privateKeyPem: pem, kiv: kiv.subarray(1) }),
    ).toThrow(MalformedFrameError);
  });

  it("rejects a key that is not whole AES blocks", () => {
    const sealed = encryptSoftApPrivateKey({ publicKey: device.publicKey, privateKeyPem: pem, kiv });
    expect(() =>
      decryptSoftApPrivateKey({ privateKey: device.privateKey, ek: sealed.ek, key: sealed.key.slice(2) }),
    ).toThrow(MalformedFrameError);
  });

  it("rejects an ek holding fewer than 32 bytes", () => {
    const ek = encryptSoftApSecret(device.publicKey, new Uint8Array(16));
    expect(() =>
      decryptSoftApPrivateKey({ privateKey: device.privateKey, ek, key: "00".repeat(16) }),
    ).toThrow(MalformedFrameError);
  });
});
