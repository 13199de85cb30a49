/**
 * Node.js cryptography for the Gen 2 handshake and session: RSA PKCS#1 v1.5 (with the Node 20+ private-decrypt
 * workaround), raw type-1 signatures over an HMAC-SHA1, AES-128-CBC and key helpers. No IO; exported from
 * `@roost/protocol/node` so that the rest of the package stays free of `node:crypto`.
 * @see spec/device-protocols.md B.1, B.2, B.3, B.7
 */
import {
  constants,
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  privateDecrypt,
  privateEncrypt,
  publicDecrypt,
  publicEncrypt,
  type KeyObject,
} from "node:crypto";

import { MalformedFrameError } from "../errors.js";
import { constantTimeEqual, copyBytes } from "./bytes.js";
import { AES_128_KEY_LENGTH, AES_BLOCK_LENGTH, ChainedCipher, type AesCbc } from "./frame.js";
import {
  checkDevicePublicKeyDer,
  checkServerPublicKeyDer,
  decodeHandshakePlaintext,
  decodeHandshakeReply,
  decodeSessionCredentials,
  DEVICE_KEY_BITS,
  encodeHandshakePlaintext,
  encodeHandshakeReply,
  encodeSessionCredentials,
  HANDSHAKE_CIPHERTEXT_LENGTH,
  PKCS1_V15_OVERHEAD,
  RSA_PUBLIC_EXPONENT,
  SERVER_KEY_BITS,
  SESSION_CREDENTIALS_LENGTH,
  type HandshakePlaintext,
  type SessionCredentials,
} from "./handshake.js";

/** Leading bytes of an RSAES-PKCS1-v1_5 encryption block: `00 02` (RFC 8017 §7.2.1 step 2). */
const PKCS1_TYPE_2_MARKER = 0x02;
/** Fewest non-zero padding bytes an encryption block carries (RFC 8017 §7.2.1: PS is at least 8 bytes). */
const PKCS1_MIN_PADDING_LENGTH = 8;
/** Offset of the padding string PS, after `00 02`. */
const PKCS1_PADDING_OFFSET = 2;

function toBytes(buffer: Uint8Array): Uint8Array {
  return new Uint8Array(buffer);
}

function wrapCryptoError(what: string, error: unknown): MalformedFrameError {
  const reason = error instanceof Error ? error.message : String(error);
  return new MalformedFrameError(`${what}: ${reason}`);
}

/** 1 when `x` (0–255) is zero, else 0, without a branch. */
function isZeroBit(x: number): number {
  return ((x - 1) >>> 31) & 1;
}

/**
 * Strips RSAES-PKCS1-v1_5 type-2 padding from a raw decrypted block `00 02 PS 00 M` and returns M (a copy).
 * Every byte of the block is examined whatever its content, and the decision is taken once at the end, so the
 * time taken does not reveal where the padding went wrong (the Bleichenbacher/Marvin oracle, CVE-2023-46809).
 * The length of M still shows, as in every implementation. Callers should treat this error exactly like a
 * nonce or HMAC mismatch, as the handshake functions here do.
 * @throws MalformedFrameError when the padding is invalid.
 * @see spec/device-protocols.md B.7 (workaround 1), RFC 8017 §7.2.2 step 3
 */
export function removePkcs1Type2Padding(block: Uint8Array): Uint8Array {
  let valid = isZeroBit(block[0] ?? 1) & isZeroBit((block[1] ?? 0) ^ PKCS1_TYPE_2_MARKER);
  let separator = 0;
  let found = 0;
  for (let i = PKCS1_PADDING_OFFSET; i < block.length; i++) {
    const zero = isZeroBit(block[i] ?? 0);
    const firstZero = zero & (found ^ 1);
    separator |= i & -firstZero;
    found |= zero;
  }
  // The separator must follow at least 8 padding bytes: separator >= 2 + 8.
  const longEnough = ((separator - (PKCS1_PADDING_OFFSET + PKCS1_MIN_PADDING_LENGTH)) >>> 31) ^ 1;
  valid &= found & longEnough;
  if (valid !== 1) throw new MalformedFrameError("RSA decryption failed");
  return copyBytes(block, separator + 1);
}

/**
 * RSAES-PKCS1-v1_5 encryption with a public key (`publicEncrypt`, still allowed on Node 20+).
 * @see spec/device-protocols.md B.2 steps 2 and 4
 */
export function rsaEncryptPkcs1(publicKey: KeyObject, plaintext: Uint8Array): Uint8Array {
  const modulusLength = publicKey.asymmetricKeyDetails?.modulusLength ?? 0;
  const maxLength = modulusLength / 8 - PKCS1_V15_OVERHEAD;
  if (plaintext.length > maxLength) {
    throw new MalformedFrameError(
      `${plaintext.length} bytes exceed the ${maxLength} an RSA-${modulusLength} block carries`,
    );
  }
  return toBytes(publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_PADDING }, plaintext));
}

/**
 * RSAES-PKCS1-v1_5 decryption with a private key. Node 20.11.1+ refuses `privateDecrypt` with PKCS#1 padding
 * (CVE-2023-46809), so this decrypts with `RSA_NO_PADDING` and removes the padding in constant time
 * ({@link removePkcs1Type2Padding}).
 * @throws MalformedFrameError when the ciphertext is not one modulus-sized block or the padding is invalid.
 * @see spec/device-protocols.md B.7
 */
export function rsaDecryptPkcs1(privateKey: KeyObject, ciphertext: Uint8Array): Uint8Array {
  const blockLength = (privateKey.asymmetricKeyDetails?.modulusLength ?? 0) / 8;
  if (ciphertext.length !== blockLength) {
    throw new MalformedFrameError(`RSA ciphertext of ${ciphertext.length} bytes; expected ${blockLength}`);
  }
  let block: Uint8Array;
  try {
    block = privateDecrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, ciphertext);
  } catch (error) {
    // Only a ciphertext not below the modulus gets here; that is public, not a padding oracle.
    throw wrapCryptoError("RSA decryption failed", error);
  }
  return removePkcs1Type2Padding(block);
}

/**
 * Raw RSA PKCS#1 v1.5 type-1 signature of `digest` with no DigestInfo wrapper (`privateEncrypt`), as the device
 * verifies with `rsa_pkcs1_verify(..., MD_NONE, 20, H, S)`.
 * @see spec/device-protocols.md B.2 step 4
 */
export function rsaSignRaw(privateKey: KeyObject, digest: Uint8Array): Uint8Array {
  return toBytes(privateEncrypt({ key: privateKey, padding: constants.RSA_PKCS1_PADDING }, digest));
}

/**
 * Verifies a raw type-1 signature made by {@link rsaSignRaw}: recovers the signed bytes with `publicDecrypt`
 * and compares them with `digest` in constant time. Returns false instead of throwing.
 * @see spec/device-protocols.md B.2 step 5
 */
export function rsaVerifyRaw(publicKey: KeyObject, digest: Uint8Array, signature: Uint8Array): boolean {
  let recovered: Uint8Array;
  try {
    recovered = publicDecrypt({ key: publicKey, padding: constants.RSA_PKCS1_PADDING }, signature);
  } catch {
    return false;
  }
  return constantTimeEqual(recovered, digest);
}

/** HMAC-SHA1 of `data` under `key` (20 bytes). @see spec/device-protocols.md B.2 step 4 */
export function hmacSha1(key: Uint8Array, data: Uint8Array): Uint8Array {
  return toBytes(createHmac("sha1", key).update(data).digest());
}

/**
 * Raw AES-128-CBC on whole blocks through `node:crypto`, for {@link ChainedCipher}. A fresh cipher per message
 * with auto-padding off; the padding and IV chaining live in `frame.ts`.
 * @see spec/device-protocols.md B.3
 */
export function createNodeAesCbc(): AesCbc {
  const run = (cipher: ReturnType<typeof createCipheriv>, data: Uint8Array): Uint8Array => {
    cipher.setAutoPadding(false);
    const head = cipher.update(data);
    const tail = cipher.final();
    const out = new Uint8Array(head.length + tail.length);
    out.set(head);
    out.set(tail, head.length);
    return out;
  };
  return {
    encrypt: (key, iv, data) => run(createCipheriv("aes-128-cbc", key, iv), data),
    decrypt: (key, iv, data) => run(createDecipheriv("aes-128-cbc", key, iv), data),
  };
}

/**
 * Raw AES-128-CBC through one long-lived `node:crypto` context per direction, for one session's key: each
 * message is one `update` on it. The context chains from the last ciphertext block it saw, whatever IV the
 * caller gives, so the difference of the two is folded into the message's first block (CBC: C0 = E(P0 ^ IV),
 * P0 = D(C0) ^ IV). A fresh context per message ({@link createNodeAesCbc}) leaves a native object and its
 * weak handle for V8's next scavenge to finalize: a fleet of thousands of pinging sessions paid for that in
 * every young-generation pause (bench/README.md, connections). Calls must come in the order of the stream
 * of each direction, as {@link ChainedCipher} makes them.
 * @see spec/device-protocols.md B.3
 */
export function createSessionAesCbc(key: Uint8Array): AesCbc {
  if (key.length !== AES_128_KEY_LENGTH) throw new RangeError("AES-128 key must be 16 bytes");
  const sessionKey = Buffer.from(key);
  /** One direction: its context, and the last ciphertext block it chained from. */
  const side = (make: typeof createCipheriv | typeof createDecipheriv) => {
    let context: ReturnType<typeof createCipheriv> | undefined;
    const chain = Buffer.alloc(AES_BLOCK_LENGTH);
    return (iv: Uint8Array): { context: ReturnType<typeof createCipheriv>; chain: Buffer } => {
      if (!context) {
        context = make("aes-128-cbc", sessionKey, iv);
        context.setAutoPadding(false);
        chain.set(iv);
      }
      return { context, chain };
    };
  };
  const encryptor = side(createCipheriv);
  const decryptor = side(createDecipheriv);
  const check = (given: Uint8Array, data: Uint8Array) => {
    if (!constantTimeEqual(given, sessionKey)) throw new RangeError("not this session's AES key");
    if (data.length === 0 || data.length % AES_BLOCK_LENGTH !== 0)
      throw new RangeError("AES-CBC data must be a positive multiple of 16 bytes");
  };
  return {
    encrypt(givenKey, iv, data) {
      check(givenKey, data);
      const { context, chain } = encryptor(iv);
      const input = Buffer.from(data);
      for (let i = 0; i < AES_BLOCK_LENGTH; i++) input[i] = (input[i] ?? 0) ^ (iv[i] ?? 0) ^ (chain[i] ?? 0);
      const out = context.update(input);
      out.copy(chain, 0, out.length - AES_BLOCK_LENGTH);
      return new Uint8Array(out.buffer, out.byteOffset, out.length);
    },
    decrypt(givenKey, iv, data) {
      check(givenKey, data);
      const { context, chain } = decryptor(iv);
      const out = context.update(data);
      for (let i = 0; i < AES_BLOCK_LENGTH; i++) out[i] = (out[i] ?? 0) ^ (iv[i] ?? 0) ^ (chain[i] ?? 0);
      chain.set(data.subarray(data.length - AES_BLOCK_LENGTH));
      return new Uint8Array(out.buffer, out.byteOffset, out.length);
    },
  };
}

/** The send and receive ciphers of one session. */
export interface SessionCiphers {
  /** Encrypts what this side sends. */
  send: ChainedCipher;
  /** Decrypts what this side receives. */
  receive: ChainedCipher;
}

/**
 * Creates the two independent IV chains of a session, both starting from `credentials.iv`.
 * @see spec/device-protocols.md B.3
 */
export function createSessionCiphers(credentials: SessionCredentials): SessionCiphers {
  const aes = createSessionAesCbc(credentials.key);
  return {
    send: new ChainedCipher({ key: credentials.key, iv: credentials.iv, aes }),
    receive: new ChainedCipher({ key: credentials.key, iv: credentials.iv, aes }),
  };
}

// --- handshake ------------------------------------------------------------------------------------------

/** Options of {@link createHandshakeCiphertext}. */
export interface CreateHandshakeCiphertextOptions extends HandshakePlaintext {
  /** The server's RSA-2048 public key. */
  serverPublicKey: KeyObject;
}

/**
 * Device side, step 2: encrypts `nonce || device id || device public key DER` under the server key (256 bytes).
 * @see spec/device-protocols.md B.2 step 2
 */
export function createHandshakeCiphertext(options: CreateHandshakeCiphertextOptions): Uint8Array {
  const { serverPublicKey, ...plaintext } = options;
  return rsaEncryptPkcs1(serverPublicKey, encodeHandshakePlaintext(plaintext));
}

/** Options of {@link openHandshakeCiphertext}. */
export interface OpenHandshakeCiphertextOptions {
  /** The 256 bytes the device sent. */
  ciphertext: Uint8Array;
  /** The server's RSA-2048 private key. */
  serverPrivateKey: KeyObject;
  /** The nonce this connection sent; the plaintext must echo it. */
  nonce: Uint8Array;
}

/**
 * Server side, step 3: decrypts the device's 256 bytes (constant-time unpadding, B.7) and checks the nonce.
 * A padding error and a nonce mismatch both surface as {@link MalformedFrameError}, so a caller that closes the
 * connection on either gives no padding oracle.
 * @see spec/device-protocols.md B.2 step 3, B.7
 */
export function openHandshakeCiphertext(options: OpenHandshakeCiphertextOptions): HandshakePlaintext {
  if (options.ciphertext.length !== HANDSHAKE_CIPHERTEXT_LENGTH) {
    throw new MalformedFrameError(
      `handshake ciphertext of ${options.ciphertext.length} bytes; expected ${HANDSHAKE_CIPHERTEXT_LENGTH}`,
    );
  }
  const plaintext = rsaDecryptPkcs1(options.serverPrivateKey, options.ciphertext);
  return decodeHandshakePlaintext(plaintext, { expectedNonce: options.nonce });
}

/** Options of {@link createHandshakeReply}. */
export interface CreateHandshakeReplyOptions {
  /** The device's RSA-1024 public key (from the handshake plaintext or the key store). */
  devicePublicKey: KeyObject;
  /** The server's RSA-2048 private key. */
  serverPrivateKey: KeyObject;
  /** Fresh random credentials for this session. */
  credentials: SessionCredentials;
}

/**
 * Server side, step 4: builds the 384-byte reply `C || S`, where C encrypts the 40 credential bytes under the
 * device key and S is a raw signature of HMAC-SHA1(credentials, C) with the server key.
 * @throws MalformedFrameError when the keys are not RSA-1024 (device) and RSA-2048 (server).
 * @see spec/device-protocols.md B.2 step 4
 */
export function createHandshakeReply(options: CreateHandshakeReplyOptions): Uint8Array {
  const { devicePublicKey, serverPrivateKey, credentials } = options;
  requireRsaKey(devicePublicKey, DEVICE_KEY_BITS, "device public key");
  requireRsaKey(serverPrivateKey, SERVER_KEY_BITS, "server private key");
  const secret = encodeSessionCredentials(credentials);
  const ciphertext = rsaEncryptPkcs1(devicePublicKey, secret);
  const signature = rsaSignRaw(serverPrivateKey, hmacSha1(secret, ciphertext));
  return encodeHandshakeReply({ ciphertext, signature });
}

/** Options of {@link openHandshakeReply}. */
export interface OpenHandshakeReplyOptions {
  /** The 384 bytes the server sent. */
  reply: Uint8Array;
  /** The device's RSA-1024 private key. */
  devicePrivateKey: KeyObject;
  /** The server's RSA-2048 public key. */
  serverPublicKey: KeyObject;
}

/**
 * Device side, step 5: decrypts C to the 40 credential bytes, recomputes the HMAC over C and verifies S with
 * the server key. The device reports DECRYPTION_ERROR or AUTHENTICATION_ERROR; here both are
 * {@link MalformedFrameError}.
 * @see spec/device-protocols.md B.2 step 5
 */
export function openHandshakeReply(options: OpenHandshakeReplyOptions): SessionCredentials {
  const { ciphertext, signature } = decodeHandshakeReply(options.reply);
  const secret = rsaDecryptPkcs1(options.devicePrivateKey, ciphertext);
  if (secret.length !== SESSION_CREDENTIALS_LENGTH) {
    throw new MalformedFrameError(
      `handshake reply carries ${secret.length} credential bytes; expected ${SESSION_CREDENTIALS_LENGTH}`,
    );
  }
  const digest = hmacSha1(secret, ciphertext);
  if (!rsaVerifyRaw(options.serverPublicKey, digest, signature)) {
    throw new MalformedFrameError("handshake reply signature does not verify against the server key");
  }
  return decodeSessionCredentials(secret);
}

// --- keys -----------------------------------------------------------------------------------------------

/** An RSA key pair as Node key objects. */
export interface RsaKeyPair {
  publicKey: KeyObject;
  privateKey: KeyObject;
}

function generateRsaKeyPair(modulusLength: number): Promise<RsaKeyPair> {
  return new Promise((resolve, reject) => {
    generateKeyPair(
      "rsa",
      { modulusLength, publicExponent: RSA_PUBLIC_EXPONENT },
      (error, publicKey, privateKey) => {
        if (error) reject(error);
        else resolve({ publicKey, privateKey });
      },
    );
  });
}

/** Generates a device key: RSA-1024, e = 65537. @see spec/device-protocols.md B.1 */
export function generateDeviceKeyPair(): Promise<RsaKeyPair> {
  return generateRsaKeyPair(DEVICE_KEY_BITS);
}

/** Generates a server key: RSA-2048, e = 65537, the only size the device can read. @see spec B.1 */
export function generateServerKeyPair(): Promise<RsaKeyPair> {
  return generateRsaKeyPair(SERVER_KEY_BITS);
}

function requireRsaKey(key: KeyObject, bits: number, what: string): void {
  const details = key.asymmetricKeyDetails;
  if (
    key.asymmetricKeyType !== "rsa" ||
    details?.modulusLength !== bits ||
    details.publicExponent !== BigInt(RSA_PUBLIC_EXPONENT)
  ) {
    throw new MalformedFrameError(`${what} must be RSA-${bits} with e = ${RSA_PUBLIC_EXPONENT}`);
  }
}

/** Public key as SubjectPublicKeyInfo DER: 162 bytes for a device key, 294 for a server key. @see spec B.1 */
export function exportPublicKeyDer(key: KeyObject): Uint8Array {
  return toBytes(key.export({ type: "spki", format: "der" }));
}

/** Private key as PKCS#1 `RSAPrivateKey` DER, the form a device stores (up to 612 bytes). @see spec B.1 */
export function exportPrivateKeyDer(key: KeyObject): Uint8Array {
  return toBytes(key.export({ type: "pkcs1", format: "der" }));
}

/** Public key as SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`), as the JS servers store device keys. */
export function exportPublicKeyPem(key: KeyObject): string {
  return key.export({ type: "spki", format: "pem" }).toString();
}

/** Private key as PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`), as the JS servers store `default_key.pem`. */
export function exportPrivateKeyPem(key: KeyObject): string {
  return key.export({ type: "pkcs1", format: "pem" }).toString();
}

/**
 * Imports an RSA public key from PEM text or SubjectPublicKeyInfo DER bytes.
 * @throws MalformedFrameError when the input is not a public key.
 */
export function importPublicKey(key: string | Uint8Array): KeyObject {
  try {
    return typeof key === "string"
      ? createPublicKey(key)
      : createPublicKey({ key: Buffer.from(key), format: "der", type: "spki" });
  } catch (error) {
    throw wrapCryptoError("invalid public key", error);
  }
}

/**
 * Imports an RSA private key from PEM text or PKCS#1 DER bytes (the device's stored form).
 * @throws MalformedFrameError when the input is not a private key.
 */
export function importPrivateKey(key: string | Uint8Array): KeyObject {
  try {
    return typeof key === "string"
      ? createPrivateKey(key)
      : createPrivateKey({ key: Buffer.from(key), format: "der", type: "pkcs1" });
  } catch (error) {
    throw wrapCryptoError("invalid private key", error);
  }
}

/**
 * Parses the device public key embedded in the handshake plaintext, requiring the exact layout a device
 * builds (RSA-1024, e = 65537, 162-byte DER).
 * @throws MalformedFrameError otherwise.
 * @see spec/device-protocols.md B.1, B.2 step 3
 */
export function parseDevicePublicKey(der: Uint8Array): KeyObject {
  checkDevicePublicKeyDer(der);
  const key = importPublicKey(der);
  requireRsaKey(key, DEVICE_KEY_BITS, "device public key");
  return key;
}

/**
 * Parses a server public key and checks that a device can use it: RSA-2048, e = 65537, and an SPKI DER export
 * with the modulus at offset 33, where the device reads it.
 * @throws MalformedFrameError otherwise.
 * @see spec/device-protocols.md B.1
 */
export function parseServerPublicKey(key: string | Uint8Array): KeyObject {
  const publicKey = importPublicKey(key);
  requireRsaKey(publicKey, SERVER_KEY_BITS, "server public key");
  checkServerPublicKeyDer(exportPublicKeyDer(publicKey));
  return publicKey;
}
