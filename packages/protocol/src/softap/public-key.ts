/**
 * The `b` field of the `public-key` reply: an upper-case hex dump of the device-public-key slot, 294 bytes
 * long although the RSA-1024 key in it is a 162-byte SubjectPublicKeyInfo. Pure byte work; turning the DER
 * into a key object is in `@roost/protocol/node`.
 * @see spec/device-protocols.md A.4 (public-key), A.6
 */
import { hexToBytes } from "../device/bytes.js";
import { checkDevicePublicKeyDer, SERVER_PUBLIC_KEY_DER_LENGTH } from "../device/handshake.js";
import { MalformedFrameError, TruncatedFrameError } from "../errors.js";
import { toUpperHex } from "./hex.js";

/**
 * Bytes the device dumps from its public-key slot: the firmware uses the server-key length constant
 * (`EXTERNAL_FLASH_SERVER_PUBLIC_KEY_LENGTH`), the length of an RSA-2048 SubjectPublicKeyInfo.
 * @see spec/device-protocols.md A.4 (public-key)
 */
export const SOFTAP_PUBLIC_KEY_SLOT_LENGTH = SERVER_PUBLIC_KEY_DER_LENGTH;

/** Hex characters of `b`: two per slot byte (588). @see spec A.4 */
export const SOFTAP_PUBLIC_KEY_HEX_LENGTH = SOFTAP_PUBLIC_KEY_SLOT_LENGTH * 2;

/**
 * Where softap-js cuts the dump to get a PKCS#1 `RSAPublicKey`: the SubjectPublicKeyInfo header of an
 * RSA-1024 key, SEQUENCE header (3) + AlgorithmIdentifier (15) + BIT STRING header (3) + unused-bits byte (1).
 * With any other key size the cut is wrong, which is why the device key must be RSA-1024.
 * @see spec/device-protocols.md A.6 ("drops the first 22 bytes")
 */
export const SOFTAP_PUBLIC_KEY_PKCS1_OFFSET = 3 + 15 + 3 + 1;

const ASN1_SEQUENCE = 0x30;
const ASN1_BIT_STRING = 0x03;
const ASN1_LONG_FORM = 0x80;
const ASN1_MAX_LENGTH_BYTES = 2;
const BYTE_BITS = 8;
const HEX_PATTERN = /^[0-9A-Fa-f]*$/;

/** Options of {@link encodeSoftApPublicKey}. */
export interface EncodeSoftApPublicKeyOptions {
  /**
   * Byte that fills the slot after the 162-byte key. What a real slot holds there is unconfirmed (spec A.4);
   * zero is the likely value, and neither softap-js nor Android reads it.
   * @default 0
   */
  fill?: number;
}

/**
 * Builds `b` from the device's public key: the 162-byte RSA-1024 SubjectPublicKeyInfo DER, padded with `fill`
 * to the 294-byte slot and dumped as 588 upper-case hex characters.
 * @throws MalformedFrameError when `der` is not the RSA-1024, e = 65537 layout a device stores.
 * @see spec/device-protocols.md A.4 (public-key), A.6
 */
export function encodeSoftApPublicKey(
  der: Uint8Array,
  { fill = 0 }: EncodeSoftApPublicKeyOptions = {},
): string {
  checkDevicePublicKeyDer(der);
  const slot = new Uint8Array(SOFTAP_PUBLIC_KEY_SLOT_LENGTH).fill(fill);
  slot.set(der);
  return toUpperHex(slot);
}

/** The key inside a `public-key` dump. */
export interface SoftApPublicKey {
  /** The SubjectPublicKeyInfo DER, cut at the length its outer SEQUENCE announces (162 bytes for RSA-1024). */
  spki: Uint8Array;
  /** The PKCS#1 `RSAPublicKey` inside it (what softap-js imports after dropping 22 bytes). */
  pkcs1: Uint8Array;
}

/**
 * Client side: reads `b`. Like Android it parses the first ASN.1 object and ignores the rest of the slot; like
 * softap-js it needs the RSA-1024 layout, and it checks that layout instead of slicing blindly.
 * @throws MalformedFrameError when `b` is not even-length hex, or not an RSA-1024 SubjectPublicKeyInfo.
 * @throws TruncatedFrameError when the dump ends inside the key.
 * @see spec/device-protocols.md A.6 (How softap-js reads the public key)
 */
export function decodeSoftApPublicKey(hex: string): SoftApPublicKey {
  if (hex.length % 2 !== 0 || !HEX_PATTERN.test(hex))
    throw new MalformedFrameError("public key is not even-length hex");
  const slot = hexToBytes(hex);
  const outer = readDerHeader(slot, 0);
  if (outer.tag !== ASN1_SEQUENCE)
    throw new MalformedFrameError("public key does not start with a DER SEQUENCE");
  const spkiLength = outer.headerLength + outer.length;
  if (spkiLength > slot.length) {
    throw new TruncatedFrameError(
      `public key announces ${spkiLength} DER bytes but the dump holds ${slot.length}`,
    );
  }
  const spki = slot.slice(0, spkiLength);
  checkDevicePublicKeyDer(spki);
  const algorithm = readDerHeader(spki, outer.headerLength);
  const bitStringAt = outer.headerLength + algorithm.headerLength + algorithm.length;
  const bitString = readDerHeader(spki, bitStringAt);
  if (bitString.tag !== ASN1_BIT_STRING) throw new MalformedFrameError("public key has no BIT STRING");
  // The BIT STRING content starts with the count of unused bits (0) before the RSAPublicKey.
  const pkcs1Offset = bitStringAt + bitString.headerLength + 1;
  return { spki, pkcs1: spki.slice(pkcs1Offset) };
}

interface DerHeader {
  tag: number;
  headerLength: number;
  length: number;
}

function readDerHeader(bytes: Uint8Array, offset: number): DerHeader {
  const tag = bytes[offset];
  const first = bytes[offset + 1];
  if (tag === undefined || first === undefined)
    throw new TruncatedFrameError("public key ends inside a DER header");
  if ((first & ASN1_LONG_FORM) === 0) return { tag, headerLength: 2, length: first };
  const count = first & ~ASN1_LONG_FORM;
  if (count === 0 || count > ASN1_MAX_LENGTH_BYTES) {
    throw new MalformedFrameError("public key has an unsupported DER length encoding");
  }
  let length = 0;
  for (let i = 0; i < count; i++) {
    const byte = bytes[offset + 2 + i];
    if (byte === undefined) throw new TruncatedFrameError("public key ends inside a DER length");
    length = (length << BYTE_BITS) | byte;
  }
  return { tag, headerLength: 2 + count, length };
}
