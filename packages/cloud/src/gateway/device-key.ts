import { createPublicKey } from "node:crypto";
import type { KeyObject } from "node:crypto";

/** DER of the AlgorithmIdentifier `{ rsaEncryption (1.2.840.113549.1.1.1), NULL }` that an RSA SPKI carries. */
const RSA_ALGORITHM_IDENTIFIER = Buffer.from("300d06092a864886f70d0101010500", "hex");

/** DER tag of SEQUENCE. */
const DER_SEQUENCE = 0x30;
/** DER tag of BIT STRING. */
const DER_BIT_STRING = 0x03;

/** A DER length at `offset` (short form, or long form of 1–2 bytes), and where the content starts. */
function readLength(der: Uint8Array, offset: number): { length: number; start: number } | undefined {
  const first = der[offset];
  if (first === undefined) return undefined;
  if (first < 0x80) return { length: first, start: offset + 1 };
  const count = first & 0x7f;
  if (count === 0 || count > 2 || offset + count >= der.length) return undefined;
  let length = 0;
  for (let index = 1; index <= count; index++) length = length * 256 + (der[offset + index] ?? 0);
  return { length, start: offset + 1 + count };
}

/**
 * The PKCS#1 RSAPublicKey inside an RSA SubjectPublicKeyInfo (RFC 5280 §4.1, RFC 8017 A.1.1):
 * `SEQUENCE { AlgorithmIdentifier, BIT STRING { 0 unused bits, RSAPublicKey } }`. Undefined for anything else.
 */
function rsaPublicKeyOf(spki: Buffer): Buffer | undefined {
  if (spki[0] !== DER_SEQUENCE) return undefined;
  const outer = readLength(spki, 1);
  if (!outer || outer.start + outer.length !== spki.length) return undefined;
  const algorithmEnd = outer.start + RSA_ALGORITHM_IDENTIFIER.length;
  if (!spki.subarray(outer.start, algorithmEnd).equals(RSA_ALGORITHM_IDENTIFIER)) return undefined;
  if (spki[algorithmEnd] !== DER_BIT_STRING) return undefined;
  const bits = readLength(spki, algorithmEnd + 1);
  if (!bits || bits.start + bits.length !== spki.length || spki[bits.start] !== 0) return undefined;
  return spki.subarray(bits.start + 1);
}

/**
 * Imports a device's SPKI DER public key. OpenSSL 3 decodes SPKI through its generic decoder chain, ~0.1 ms
 * per key (0.3 ms under a handshake storm, bench/README.md); the RSAPublicKey inside imports in a few µs.
 * Anything but a plain RSA SPKI takes the generic path, so what is accepted and refused does not change.
 */
export function importDevicePublicKey(spki: Uint8Array): KeyObject {
  const der = Buffer.from(spki.buffer, spki.byteOffset, spki.byteLength);
  const pkcs1 = rsaPublicKeyOf(der);
  if (pkcs1) {
    try {
      return createPublicKey({ key: pkcs1, format: "der", type: "pkcs1" });
    } catch {
      // Malformed inside: let the generic decoder produce its usual error.
    }
  }
  return createPublicKey({ key: der, format: "der", type: "spki" });
}
