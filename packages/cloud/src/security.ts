import { hash, randomBytes, randomFillSync, randomUUID, scrypt, timingSafeEqual } from "node:crypto";

import { CLAIM_CODE_LENGTH } from "@roost/protocol";

/** A fresh 160-bit secret as 40 lower-case hex characters, the form of Particle's tokens. @see spec/cloud-api.md §1.1 */
export function newToken(): string {
  return randomBytes(20).toString("hex");
}

/** Random bytes behind one claim code. */
const CLAIM_CODE_BYTES = 48;

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
 * A fresh claim code: 48 random bytes in base64 (64 characters) cut to 63, so 378 bits of entropy
 * from the base64 alphabet. @see spec/cloud-api.md §3.2, DESIGN.md security rules
 */
export function newClaimCode(): string {
  return randomPooled(CLAIM_CODE_BYTES).toString("base64").slice(0, CLAIM_CODE_LENGTH);
}

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
