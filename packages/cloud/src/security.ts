import { hash, randomBytes, randomFillSync, randomUUID, scrypt, timingSafeEqual } from "node:crypto";

import { CLAIM_CODE_LENGTH } from "@roost/protocol";

/** A fresh 160-bit secret as 40 lower-case hex characters, the form of Particle's tokens. @see spec/cloud-api.md §1.1 */
export function newToken(): string {
  return randomBytes(20).toString("hex");
}

/** Bytes of a claim code row's ID as a code carries it (see {@link newClaimCodeRowId}): 120 bits. */
const ROW_ID_PACKED_BYTES = 15;
/** Characters of a claim code that carry its row's ID: its 15 packed bytes in base64. */
const CLAIM_CODE_ROW_ID_LENGTH = 20;
/** Random bytes behind the rest of a claim code: 44 base64 characters, of which 43 are kept (258 bits). */
const CLAIM_CODE_SECRET_BYTES = 33;

/** Random bytes drawn from the CSPRNG at once, handed out in slices that are each used once. */
const RANDOM_POOL_BYTES = 48 * 128;
const randomPool = Buffer.alloc(RANDOM_POOL_BYTES);
let randomPoolOffset = RANDOM_POOL_BYTES;

/**
 * `length` fresh random bytes from a pool refilled by `randomFillSync` when spent, as Node's own
 * `randomUUID` does: one call into OpenSSL per 128 claim codes instead of one per code (a few microseconds
 * each; bench api scenario). A slice is never handed out twice. The view is only valid until the next call.
 */
function randomPooled(length: number): Buffer {
  if (randomPoolOffset + length > RANDOM_POOL_BYTES) {
    randomFillSync(randomPool);
    randomPoolOffset = 0;
  }
  const slice = randomPool.subarray(randomPoolOffset, randomPoolOffset + length);
  randomPoolOffset += length;
  return slice;
}

/**
 * `length` fresh random bytes of their own (not a view of the pool): the handshake's nonce and session
 * credentials, five draws per connecting device, each a call into OpenSSL before (bench handshake profile).
 */
export function randomBytesPooled(length: number): Uint8Array {
  return new Uint8Array(randomPooled(length));
}

/**
 * A fresh claim code for the claim code row `id` (made by {@link newClaimCodeRowId}): the ID packed in 20
 * base64 characters, then 43 characters of 258 random bits; 63 characters of the base64 alphabet in all, the
 * length and form of Particle's codes. A claim finds the row by the ID ({@link claimCodeRowId}) and accepts
 * the code only if it hashes to the row's stored hash, so no index over the hashes of all codes has to grow
 * at a random place with each new code (bench/README.md, api). The code is stored only as its hash; the ID in
 * it tells nothing but when the code was made. @see spec/cloud-api.md §3.2, DESIGN.md security rules
 */
export function newClaimCode(id: string): string {
  const packed = packRowId(id);
  if (!packed) throw new RangeError(`not a claim code row ID: ${id}`);
  return claimCodeOf(packed);
}

/**
 * A fresh claim code row ID ({@link newClaimCodeRowId}) and a code for it ({@link newClaimCode}), the ID packed
 * once: the API's path for every fresh code, where reading the ID back from its own text cost 2 % of a
 * request's CPU (bench/README.md, api).
 */
export function newClaimCodeAndRowId(now: number = Date.now()): { id: string; code: string } {
  const packed = newPackedRowId(now);
  return { id: unpackRowId(packed), code: claimCodeOf(packed) };
}

/** The code for a packed row ID: the ID in base64, then the random secret. */
function claimCodeOf(packed: Buffer): string {
  return (
    packed.toString("base64") +
    randomPooled(CLAIM_CODE_SECRET_BYTES)
      .toString("base64")
      .slice(0, CLAIM_CODE_LENGTH - CLAIM_CODE_ROW_ID_LENGTH)
  );
}

/**
 * The claim code row ID that `code` carries if {@link newClaimCode} made it, or undefined when the code
 * cannot be one of those (an ICCID or IMEI used as a code, another length or alphabet). Every 63-character
 * base64 code reads as some ID: one made before the IDs were put in codes finds no row by it, and the claim
 * then looks the code up by its hash.
 */
export function claimCodeRowId(code: string): string | undefined {
  if (code.length !== CLAIM_CODE_LENGTH || !BASE64_CHARACTERS.test(code)) return undefined;
  return unpackRowId(Buffer.from(code.slice(0, CLAIM_CODE_ROW_ID_LENGTH), "base64"));
}

const BASE64_CHARACTERS = /^[A-Za-z0-9+/]+$/;

/**
 * A fresh claim code row ID: a version 7 UUID (RFC 9562 §5.7), 48 bits of Unix time in ms then 72 random
 * bits, the two lowest bits of its `rand_a` left zero so that the ID fits the 120 bits a code gives it (and
 * the code's secret keeps 256 bits and more). Rows keyed by it are added at the end of their primary key's
 * index, a page already in the cache, not at a random page of it (bench/README.md, api).
 */
export function newClaimCodeRowId(now: number = Date.now()): string {
  return unpackRowId(newPackedRowId(now));
}

/** A fresh row ID in its packed form (see {@link unpackRowId}): 6 bytes of time, 9 random. */
function newPackedRowId(now: number): Buffer {
  const packed = Buffer.allocUnsafe(ROW_ID_PACKED_BYTES);
  packed.writeUIntBE(now, 0, 6);
  randomPooled(ROW_ID_PACKED_BYTES - 6).copy(packed, 6);
  return packed;
}

/**
 * Packed (15 bytes): the 6 bytes of time, then 72 bits: the 10 high bits of `rand_a`, then the 62 bits of
 * `rand_b`. The UUID (16 bytes) adds the version (7), the variant (binary 10) and the two zero bits.
 */
function unpackRowId(packed: Buffer): string {
  const uuid = Buffer.allocUnsafe(16);
  packed.copy(uuid, 0, 0, 6);
  const randA = ((packed[6] ?? 0) << 2) | ((packed[7] ?? 0) >> 6);
  uuid[6] = 0x70 | (randA >> 6);
  uuid[7] = (randA << 2) & 0xff;
  uuid[8] = 0x80 | ((packed[7] ?? 0) & 0x3f);
  packed.copy(uuid, 9, 8, 15);
  const hex = uuid.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The packed form of a row ID {@link newClaimCodeRowId} made, or undefined for any other string. */
function packRowId(id: string): Buffer | undefined {
  if (!ROW_ID.test(id)) return undefined;
  const uuid = Buffer.from(id.replaceAll("-", ""), "hex");
  const randA = (((uuid[6] ?? 0) & 0x0f) << 8) | (uuid[7] ?? 0);
  if ((randA & 0b11) !== 0) return undefined;
  const packed = Buffer.allocUnsafe(ROW_ID_PACKED_BYTES);
  uuid.copy(packed, 0, 0, 6);
  packed[6] = randA >> 4;
  packed[7] = (((randA >> 2) & 0b11) << 6) | ((uuid[8] ?? 0) & 0x3f);
  uuid.copy(packed, 8, 9, 16);
  return packed;
}

/** A version 7 UUID of the RFC's variant, in lower case. */
const ROW_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A random identifier for rows that are never secrets (users, customers, claim ids). */
export function newId(): string {
  return randomUUID();
}

/**
 * SHA-256 in hex: how every high-entropy secret (token, claim code, client secret) is stored. The one-shot
 * `crypto.hash` (Node ≥ 20.12) spends a third of `createHash().update().digest()`, which builds a Hash stream.
 */
export function hashSecret(secret: string): string {
  return hash("sha256", secret, "hex");
}

/** Compares two strings in time that depends only on their lengths. */
export function safeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a, "utf8");
  const right = Buffer.from(b, "utf8");
  if (left.length !== right.length) {
    // Still spend a comparison so that a length mismatch is not much faster than a content mismatch.
    timingSafeEqual(left, left);
    return false;
  }
  return timingSafeEqual(left, right);
}

/** True when `secret` hashes to `storedHash`, compared in constant time. */
export function verifySecret(secret: string, storedHash: string): boolean {
  return safeEqual(hashSecret(secret), storedHash);
}

const SCRYPT_KEY_LENGTH = 32;
const SCRYPT_BLOCK_SIZE = 8;

function scryptAsync(password: string, salt: Buffer, cost: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(
      password,
      salt,
      SCRYPT_KEY_LENGTH,
      { N: cost, r: SCRYPT_BLOCK_SIZE, p: 1, maxmem: 256 * cost * SCRYPT_BLOCK_SIZE },
      (error, key) => (error ? reject(error) : resolve(key)),
    );
  });
}

/** Hashes a password with scrypt (memory-hard) as `scrypt$N$salt$hash`, so the cost can change later. */
export async function hashPassword(password: string, cost: number): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, cost);
  return `scrypt$${cost}$${salt.toString("base64")}$${key.toString("base64")}`;
}

/** Checks a password against a stored `hashPassword` result in constant time. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, costText, saltText, keyText] = stored.split("$");
  if (scheme !== "scrypt" || !costText || !saltText || !keyText) return false;
  const expected = Buffer.from(keyText, "base64");
  const actual = await scryptAsync(password, Buffer.from(saltText, "base64"), Number(costText));
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/** A hash that `verifyPassword` never accepts, used to spend the same time when a user does not exist. */
export const UNUSABLE_PASSWORD_HASH = `scrypt$16384$${Buffer.alloc(16).toString("base64")}$${Buffer.alloc(32).toString("base64")}`;
