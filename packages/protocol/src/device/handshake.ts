/**
 * Byte layouts of the Gen 2 "LightSSL" handshake over TCP 5683: the device's RSA-encrypted hello, the server's
 * 384-byte reply and the session credentials it carries. Pure: the RSA and HMAC steps live in `crypto.ts`.
 * @see spec/device-protocols.md B.1, B.2
 */
import { MalformedFrameError, TruncatedFrameError } from "../errors.js";
import { isDeviceId } from "../ids.js";
import { bytesToHex, concatBytes, constantTimeEqual, hexToBytes } from "./bytes.js";
import { bytes, defineStruct, type StructValue } from "./struct.js";

/** Public exponent of every Gen 2 RSA key; the device hard-codes it for both keys. @see spec B.1 */
export const RSA_PUBLIC_EXPONENT = 65537;

/** Device key size in bits (RSA-1024). @see spec B.1 */
export const DEVICE_KEY_BITS = 1024;

/** Server key size in bits (RSA-2048); the device can only read a key of exactly this size. @see spec B.1 */
export const SERVER_KEY_BITS = 2048;

/** Bytes of padding overhead in RSAES-PKCS1-v1_5: a message may be at most k − 11 bytes (RFC 8017 §7.2.1). */
export const PKCS1_V15_OVERHEAD = 11;

/** Length of the random nonce the server sends first, in bytes. @see spec B.2 step 1 */
export const HANDSHAKE_NONCE_LENGTH = 40;

/** Length of the raw device id (the STM32 UID), in bytes; 24 hex characters. @see spec B.2 step 2 */
export const DEVICE_ID_LENGTH = 12;

/** Length of the device's handshake ciphertext: one RSA-2048 block. @see spec B.2 step 2 */
export const HANDSHAKE_CIPHERTEXT_LENGTH = SERVER_KEY_BITS / 8;

/** Length of the AES-128 session key, in bytes. @see spec B.2 step 4 */
export const SESSION_KEY_LENGTH = 16;

/** Length of the initial AES-CBC IV (one AES block), in bytes. @see spec B.2 step 4 */
export const SESSION_IV_LENGTH = 16;

/** Length of the salt that seeds the device's message-id counter, in bytes. @see spec B.2 step 4 */
export const SESSION_SALT_LENGTH = 8;

/** Length of an HMAC-SHA1 digest, in bytes. @see spec B.2 step 4 */
export const HMAC_SHA1_LENGTH = 20;

const HANDSHAKE_PLAINTEXT_HEAD = defineStruct("handshake plaintext", {
  nonce: bytes(HANDSHAKE_NONCE_LENGTH),
  deviceId: bytes(DEVICE_ID_LENGTH),
});

const SESSION_CREDENTIALS = defineStruct("session credentials", {
  key: bytes(SESSION_KEY_LENGTH),
  iv: bytes(SESSION_IV_LENGTH),
  salt: bytes(SESSION_SALT_LENGTH),
});

const HANDSHAKE_REPLY = defineStruct("handshake reply", {
  ciphertext: bytes(DEVICE_KEY_BITS / 8),
  signature: bytes(SERVER_KEY_BITS / 8),
});

/** Shortest acceptable handshake plaintext: nonce and device id, without a key (52). @see spec B.2 step 3 */
export const HANDSHAKE_PLAINTEXT_MIN_LENGTH = HANDSHAKE_PLAINTEXT_HEAD.size;

/** Longest plaintext one RSA-2048 PKCS#1 v1.5 block can carry (245). @see spec B.2 step 2 */
export const HANDSHAKE_PLAINTEXT_MAX_LENGTH = HANDSHAKE_CIPHERTEXT_LENGTH - PKCS1_V15_OVERHEAD;

/** Length of the session credentials `key(16) || iv(16) || salt(8)` (40). @see spec B.2 step 4 */
export const SESSION_CREDENTIALS_LENGTH = SESSION_CREDENTIALS.size;

/** Length of the server's reply `C(128) || S(256)` (384). @see spec B.2 steps 4–5 */
export const HANDSHAKE_REPLY_LENGTH = HANDSHAKE_REPLY.size;

/** What the device sends in its handshake ciphertext. @see spec B.2 steps 2–3 */
export interface HandshakePlaintext {
  /** The 40 bytes the server sent; echoed back to prove freshness. */
  nonce: Uint8Array;
  /** Device id as 24 lower-case hex characters. */
  deviceId: string;
  /** The device's public key as SubjectPublicKeyInfo DER (162 bytes for RSA-1024); absent if not sent. */
  devicePublicKey?: Uint8Array | undefined;
}

/** The 40 random bytes the server picks per session: AES key, initial IV and salt. @see spec B.2 step 4 */
export type SessionCredentials = StructValue<typeof SESSION_CREDENTIALS.schema>;

/** The server's 384-byte reply split into its two RSA blocks. @see spec B.2 steps 4–5 */
export type HandshakeReplyParts = StructValue<typeof HANDSHAKE_REPLY.schema>;

/** Options of {@link decodeHandshakePlaintext}. */
export interface DecodeHandshakePlaintextOptions {
  /** The nonce this connection sent; when given, a plaintext echoing another nonce is rejected. */
  expectedNonce?: Uint8Array | undefined;
}

function deviceIdToBytes(deviceId: string): Uint8Array {
  if (!isDeviceId(deviceId)) {
    throw new MalformedFrameError(`not a 24-hex-character device id: ${JSON.stringify(deviceId)}`);
  }
  return hexToBytes(deviceId);
}

/**
 * Builds the device's handshake plaintext `nonce(40) || device id(12) || device public key DER`, the input to
 * the RSA-2048 encryption of step 2.
 * @throws MalformedFrameError when a field has the wrong size or the result exceeds 245 bytes.
 * @see spec/device-protocols.md B.2 step 2
 */
export function encodeHandshakePlaintext(plaintext: HandshakePlaintext): Uint8Array {
  const head = HANDSHAKE_PLAINTEXT_HEAD.encode({
    nonce: plaintext.nonce,
    deviceId: deviceIdToBytes(plaintext.deviceId),
  });
  const out = concatBytes(head, plaintext.devicePublicKey ?? new Uint8Array(0));
  if (out.length > HANDSHAKE_PLAINTEXT_MAX_LENGTH) {
    throw new MalformedFrameError(
      `handshake plaintext is ${out.length} bytes; RSA-2048 PKCS#1 v1.5 carries at most ${HANDSHAKE_PLAINTEXT_MAX_LENGTH}`,
    );
  }
  return out;
}

/**
 * Splits the decrypted handshake plaintext into nonce, device id (lower-case hex) and the embedded public key.
 * Rules (step 3): at least 52 bytes (else {@link TruncatedFrameError}); at most 245, since it came out of one
 * RSA-2048 block; the first 40 bytes equal `expectedNonce` when given (else {@link MalformedFrameError}).
 * The nonce is compared in constant time.
 * @see spec/device-protocols.md B.2 step 3
 */
export function decodeHandshakePlaintext(
  plaintext: Uint8Array,
  options: DecodeHandshakePlaintextOptions = {},
): HandshakePlaintext {
  if (plaintext.length > HANDSHAKE_PLAINTEXT_MAX_LENGTH) {
    throw new MalformedFrameError(
      `handshake plaintext is ${plaintext.length} bytes; one RSA-2048 block carries at most ${HANDSHAKE_PLAINTEXT_MAX_LENGTH}`,
    );
  }
  const { value, rest } = HANDSHAKE_PLAINTEXT_HEAD.decodePrefix(plaintext);
  const { expectedNonce } = options;
  if (expectedNonce !== undefined && !constantTimeEqual(value.nonce, expectedNonce)) {
    throw new MalformedFrameError("handshake plaintext does not echo this connection's nonce");
  }
  return {
    nonce: value.nonce,
    deviceId: bytesToHex(value.deviceId),
    devicePublicKey: rest.length > 0 ? rest : undefined,
  };
}

/** Serializes session credentials to the 40 bytes that are RSA-encrypted to the device. @see spec B.2 step 4 */
export function encodeSessionCredentials(credentials: SessionCredentials): Uint8Array {
  return SESSION_CREDENTIALS.encode(credentials);
}

/**
 * Parses the 40 decrypted credential bytes into key, IV and salt. Shorter input is a
 * {@link TruncatedFrameError}, longer a {@link MalformedFrameError}.
 * @see spec/device-protocols.md B.2 steps 4–5
 */
export function decodeSessionCredentials(input: Uint8Array): SessionCredentials {
  return SESSION_CREDENTIALS.decode(input);
}

/** Joins the two RSA blocks of the server's reply into its 384 wire bytes. @see spec B.2 step 4 */
export function encodeHandshakeReply(parts: HandshakeReplyParts): Uint8Array {
  return HANDSHAKE_REPLY.encode(parts);
}

/**
 * Splits the server's 384-byte reply into `ciphertext` (C, 128 bytes) and `signature` (S, 256 bytes).
 * @see spec/device-protocols.md B.2 step 5
 */
export function decodeHandshakeReply(reply: Uint8Array): HandshakeReplyParts {
  return HANDSHAKE_REPLY.decode(reply);
}

/**
 * The device's message-id counter after the handshake: salt bytes 0–1 read little-endian. Ids are
 * pre-incremented, so the device's Hello carries `(seed + 1) mod 65536`.
 * @see spec/device-protocols.md B.2 ("Initial message-id counter")
 */
export function messageIdSeedFromSalt(salt: Uint8Array): number {
  if (salt.length < 2) throw new TruncatedFrameError(`salt has ${salt.length} bytes; need 2`);
  return (salt[0] ?? 0) | ((salt[1] ?? 0) << 8);
}

// --- SubjectPublicKeyInfo layout -------------------------------------------------------------------------

const ASN1_SEQUENCE = 0x30;
const ASN1_INTEGER = 0x02;
const ASN1_BIT_STRING = 0x03;
/** DER length octets use the long form above 127 (X.690 §8.1.3.5). */
const DER_SHORT_LENGTH_MAX = 0x7f;
/** Long-form DER length prefixes: one (0x81) or two (0x82) length octets follow (X.690 §8.1.3.5). */
const DER_LONG_LENGTH_1 = 0x81;
const DER_LONG_LENGTH_2 = 0x82;
/** Largest length one long-form length octet holds. */
const DER_ONE_OCTET_MAX = 0xff;
/** A DER INTEGER whose first octet has this bit set would read as negative, so it gets a leading 0x00. */
const SIGN_BIT = 0x80;
/** `AlgorithmIdentifier { rsaEncryption (1.2.840.113549.1.1.1), NULL }` (RFC 8017 Appendix C). */
const RSA_ALGORITHM_IDENTIFIER = [
  0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
] as const;

function derHeader(tag: number, length: number): number[] {
  if (length <= DER_SHORT_LENGTH_MAX) return [tag, length];
  if (length <= DER_ONE_OCTET_MAX) return [tag, DER_LONG_LENGTH_1, length];
  return [tag, DER_LONG_LENGTH_2, length >> 8, length & 0xff];
}

function derUnsignedInteger(value: number): number[] {
  const octets: number[] = [];
  for (let rest = value; rest > 0; rest = Math.floor(rest / 256)) octets.unshift(rest % 256);
  if ((octets[0] ?? 0) & SIGN_BIT) octets.unshift(0);
  return [...derHeader(ASN1_INTEGER, octets.length), ...octets];
}

/**
 * The bytes before and after the modulus in the DER SubjectPublicKeyInfo of an RSA key whose modulus is
 * `modulusLength` bytes with the top bit set and whose exponent is 65537. The device rebuilds its own public key
 * from exactly this header (B.1: 29 bytes for RSA-1024) and reads the server modulus right after it (33 bytes
 * for RSA-2048), so computing it here keeps both offsets derived rather than typed in twice.
 */
function rsaSpkiLayout(modulusLength: number): { prefix: Uint8Array; suffix: Uint8Array; length: number } {
  // INTEGER n needs a leading 0x00 because the top bit of the modulus is set.
  const modulusHeader = [...derHeader(ASN1_INTEGER, modulusLength + 1), 0x00];
  const exponent = derUnsignedInteger(RSA_PUBLIC_EXPONENT);
  const rsaKeyBody = modulusHeader.length + modulusLength + exponent.length;
  const rsaKeyHeader = derHeader(ASN1_SEQUENCE, rsaKeyBody);
  // BIT STRING content starts with the count of unused bits, 0.
  const bitStringHeader = [...derHeader(ASN1_BIT_STRING, 1 + rsaKeyHeader.length + rsaKeyBody), 0x00];
  const spkiBody =
    RSA_ALGORITHM_IDENTIFIER.length + bitStringHeader.length + rsaKeyHeader.length + rsaKeyBody;
  const prefix = [
    ...derHeader(ASN1_SEQUENCE, spkiBody),
    ...RSA_ALGORITHM_IDENTIFIER,
    ...bitStringHeader,
    ...rsaKeyHeader,
    ...modulusHeader,
  ];
  return {
    prefix: Uint8Array.from(prefix),
    suffix: Uint8Array.from(exponent),
    length: prefix.length + modulusLength + exponent.length,
  };
}

/** Length of the device public key as SubjectPublicKeyInfo DER (162). @see spec B.1 */
export const DEVICE_PUBLIC_KEY_DER_LENGTH = rsaSpkiLayout(DEVICE_KEY_BITS / 8).length;

/** Length of the server public key as SubjectPublicKeyInfo DER (294). @see spec B.1 */
export const SERVER_PUBLIC_KEY_DER_LENGTH = rsaSpkiLayout(SERVER_KEY_BITS / 8).length;

/** Length of the handshake plaintext a real device sends: nonce, id and its 162-byte key (214). @see spec B.2 */
export const HANDSHAKE_PLAINTEXT_LENGTH = HANDSHAKE_PLAINTEXT_MIN_LENGTH + DEVICE_PUBLIC_KEY_DER_LENGTH;

/** Byte offset at which the device reads the 256-byte server modulus from the stored DER (33). @see spec B.1 */
export const SERVER_PUBLIC_KEY_MODULUS_OFFSET = rsaSpkiLayout(SERVER_KEY_BITS / 8).prefix.length;

/** Length of the fixed DER header the device puts before its own modulus (29). @see spec B.1 */
export const DEVICE_PUBLIC_KEY_MODULUS_OFFSET = rsaSpkiLayout(DEVICE_KEY_BITS / 8).prefix.length;

function checkRsaSpkiLayout(der: Uint8Array, bits: number, what: string): void {
  const modulusLength = bits / 8;
  const layout = rsaSpkiLayout(modulusLength);
  if (der.length !== layout.length) {
    throw new MalformedFrameError(
      `${what} DER is ${der.length} bytes; RSA-${bits} with e=65537 is ${layout.length}`,
    );
  }
  const prefix = der.subarray(0, layout.prefix.length);
  const suffix = der.subarray(der.length - layout.suffix.length);
  const topByte = der[layout.prefix.length] ?? 0;
  if (
    !constantTimeEqual(prefix, layout.prefix) ||
    !constantTimeEqual(suffix, layout.suffix) ||
    (topByte & SIGN_BIT) === 0
  ) {
    throw new MalformedFrameError(`${what} DER is not an RSA-${bits} SubjectPublicKeyInfo with e=65537`);
  }
}

/**
 * Checks that `der` is a server public key the device can use: RSA-2048, e = 65537, SubjectPublicKeyInfo DER of
 * 294 bytes with the modulus at byte offset 33, where the device reads it without parsing ASN.1.
 * @throws MalformedFrameError otherwise.
 * @see spec/device-protocols.md B.1
 */
export function checkServerPublicKeyDer(der: Uint8Array): void {
  checkRsaSpkiLayout(der, SERVER_KEY_BITS, "server public key");
}

/**
 * Checks that `der` is a device public key in the layout the device itself builds: RSA-1024, e = 65537,
 * 162-byte SubjectPublicKeyInfo DER with the fixed 29-byte header.
 * @throws MalformedFrameError otherwise.
 * @see spec/device-protocols.md B.1
 */
export function checkDevicePublicKeyDer(der: Uint8Array): void {
  checkRsaSpkiLayout(der, DEVICE_KEY_BITS, "device public key");
}
