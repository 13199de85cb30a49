/**
 * Node.js cryptography of SoftAP setup: the RSA-encrypted Wi-Fi password (`pwd`), the EAP-TLS private key
 * (`ek` + `key`), and importing the key from a `public-key` reply. Device-side decryption follows the
 * firmware's rules (lenient hex, password cut at NUL); RSA uses the constant-time PKCS#1 unpadding of
 * `rsaDecryptPkcs1`, because Node 20 refuses PKCS#1 padding in `privateDecrypt`. No IO; exported from
 * `@roost/protocol/node`.
 * @see spec/device-protocols.md A.6
 */
import type { KeyObject } from "node:crypto";

import { bytesToHex } from "../device/bytes.js";
import { createNodeAesCbc, importPublicKey, rsaDecryptPkcs1, rsaEncryptPkcs1 } from "../device/crypto.js";
import { addPkcs7Padding, AES_128_KEY_LENGTH, AES_BLOCK_LENGTH } from "../device/frame.js";
import { MalformedFrameError } from "../errors.js";
import { decodeDeviceHex } from "./hex.js";
import { decodeSoftApPublicKey } from "./public-key.js";

/** Most ciphertext bytes the device hex-decodes before RSA decryption (`uint8_t buf[256]`). @see spec A.6 */
export const SOFTAP_CIPHERTEXT_MAX_LENGTH = 256;

/** Length of the random AES-128 key + IV that EAP-TLS setup sends RSA-encrypted as `ek`. @see spec A.6 */
export const SOFTAP_KIV_LENGTH = AES_128_KEY_LENGTH + AES_BLOCK_LENGTH;

/**
 * `pwd` values shorter than this many bytes are taken as the plain password: the firmware decrypts only when
 * `strlen(pwd) / 2` is non-zero, so `""` (open networks) and a single character pass through unchanged.
 * @see spec/device-protocols.md A.6 (pwd)
 */
export const SOFTAP_MIN_ENCRYPTED_PWD_LENGTH = 2;

const HEX_CHARS_PER_BYTE = 2;
const NUL = 0;

/** Imports the device key from the `b` field of a `public-key` reply (RSA-1024 only, as softap-js). @see spec A.6 */
export function importSoftApPublicKey(b: string): KeyObject {
  return importPublicKey(decodeSoftApPublicKey(b).spki);
}

/**
 * Client side: RSA PKCS#1 v1.5 encryption of a secret (a Wi-Fi password as UTF-8, or the EAP-TLS key+IV) under
 * the device key, as lower-case hex (Android lower-cases, citing early firmware trouble with upper case).
 * @throws MalformedFrameError when the secret is too long for one RSA block (117 bytes for RSA-1024).
 * @see spec/device-protocols.md A.6
 */
export function encryptSoftApSecret(publicKey: KeyObject, secret: string | Uint8Array): string {
  const plaintext = typeof secret === "string" ? new TextEncoder().encode(secret) : secret;
  return bytesToHex(rsaEncryptPkcs1(publicKey, plaintext));
}

/**
 * Device side: decrypts a hex ciphertext as the firmware's `decrypt()` does: hex-decodes at most 256 bytes with
 * its lenient decoder, then RSA-decrypts one modulus-sized block (128 bytes for RSA-1024) from the start.
 * @throws MalformedFrameError when fewer bytes than one block arrive (the device would read stale stack memory)
 * or the padding is invalid (the device answers `r` < 0).
 * @see spec/device-protocols.md A.6
 */
export function decryptSoftApSecret(privateKey: KeyObject, hex: string): Uint8Array {
  const blockLength = (privateKey.asymmetricKeyDetails?.modulusLength ?? 0) / 8;
  const ciphertext = decodeDeviceHex(hex, SOFTAP_CIPHERTEXT_MAX_LENGTH);
  if (blockLength === 0 || ciphertext.length < blockLength) {
    throw new MalformedFrameError(
      `SoftAP ciphertext of ${ciphertext.length} bytes; the key needs ${blockLength}`,
    );
  }
  return rsaDecryptPkcs1(privateKey, ciphertext.subarray(0, blockLength));
}

/**
 * Device side: the Wi-Fi password from a `configure-ap` `pwd`. A value of fewer than 2 bytes is used as is (no
 * key needed); anything else is decrypted ({@link decryptSoftApSecret}) and read as a C string (up to the first
 * NUL, as UTF-8).
 * @throws MalformedFrameError when decryption fails or there is no key (the device then answers a negative `r`).
 * @see spec/device-protocols.md A.6 (pwd)
 */
export function openSoftApPassword(privateKey: KeyObject | undefined, pwd: string): string {
  if (new TextEncoder().encode(pwd).length < SOFTAP_MIN_ENCRYPTED_PWD_LENGTH) return pwd;
  if (!privateKey) throw new MalformedFrameError("the device has no private key to decrypt pwd with");
  const plaintext = decryptSoftApSecret(privateKey, pwd);
  const end = plaintext.indexOf(NUL);
  return new TextDecoder().decode(end === -1 ? plaintext : plaintext.subarray(0, end));
}

/** Options of {@link encryptSoftApPrivateKey}. */
export interface EncryptSoftApPrivateKeyOptions {
  /** The device key from `public-key`. */
  publicKey: KeyObject;
  /** The client's private key, PEM text. */
  privateKeyPem: string;
  /** 32 fresh random bytes: AES-128 key, then IV. */
  kiv: Uint8Array;
}

/** The two `configure-ap` fields that carry an EAP-TLS private key. */
export interface SoftApEncryptedPrivateKey {
  /** The key+IV, RSA-encrypted, hex. */
  ek: string;
  /** The PEM, AES-128-CBC-encrypted with PKCS#7 padding, hex. */
  key: string;
}

/**
 * Client side of EAP-TLS setup (softap-js `aesEncrypt`): RSA-encrypts `kiv` as `ek` and AES-128-CBC-encrypts the
 * PEM (PKCS#7 padding) under it as `key`.
 * @throws MalformedFrameError when `kiv` is not 32 bytes.
 * @see spec/device-protocols.md A.6 (EAP-TLS private key)
 */
export function encryptSoftApPrivateKey(options: EncryptSoftApPrivateKeyOptions): SoftApEncryptedPrivateKey {
  const { publicKey, privateKeyPem, kiv } = options;
  if (kiv.length !== SOFTAP_KIV_LENGTH)
    throw new MalformedFrameError(`kiv must be ${SOFTAP_KIV_LENGTH} bytes`);
  const key = kiv.subarray(0, AES_128_KEY_LENGTH);
  const iv = kiv.subarray(AES_128_KEY_LENGTH);
  const ciphertext = createNodeAesCbc().encrypt(
    key,
    iv,
    addPkcs7Padding(new TextEncoder().encode(privateKeyPem)),
  );
  return { ek: encryptSoftApSecret(publicKey, kiv), key: bytesToHex(ciphertext) };
}

/** Options of {@link decryptSoftApPrivateKey}. */
export interface DecryptSoftApPrivateKeyOptions extends SoftApEncryptedPrivateKey {
  /** The device's RSA private key. */
  privateKey: KeyObject;
}

/**
 * Device side of EAP-TLS setup: decrypts `ek` to the AES key+IV, then `key` block by block. Like the firmware it
 * does not remove the PKCS#7 padding: the result ends with 1–16 padding bytes.
 * @throws MalformedFrameError when `ek` does not decrypt to at least 32 bytes, or `key` is not a positive
 * multiple of 32 hex characters (whole AES blocks).
 * @see spec/device-protocols.md A.6 (EAP-TLS private key)
 */
export function decryptSoftApPrivateKey(options: DecryptSoftApPrivateKeyOptions): Uint8Array {
  const kiv = decryptSoftApSecret(options.privateKey, options.ek);
  if (kiv.length < SOFTAP_KIV_LENGTH)
    throw new MalformedFrameError(`ek holds ${kiv.length} bytes; expected ${SOFTAP_KIV_LENGTH}`);
  const blockHex = AES_BLOCK_LENGTH * HEX_CHARS_PER_BYTE;
  if (options.key.length === 0 || options.key.length % blockHex !== 0) {
    throw new MalformedFrameError(`key must be a positive multiple of ${blockHex} hex characters`);
  }
  const ciphertext = decodeDeviceHex(options.key, options.key.length / HEX_CHARS_PER_BYTE);
  return createNodeAesCbc().decrypt(
    kiv.subarray(0, AES_128_KEY_LENGTH),
    kiv.subarray(AES_128_KEY_LENGTH, SOFTAP_KIV_LENGTH),
    ciphertext,
  );
}
