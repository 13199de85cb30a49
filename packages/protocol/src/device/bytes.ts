import { MalformedFrameError } from "../errors.js";

/** Joins byte arrays into one new array. */
export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * Compares two byte arrays without an early exit on the first difference, so the time taken does not tell
 * a peer how many leading bytes of a secret (nonce, MAC) it guessed right. Lengths are not secret.
 */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return difference === 0;
}

/** Lower-case hex of `bytes`, two characters per byte. */
export function bytesToHex(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes) out += byte.toString(16).padStart(2, "0");
  return out;
}

const HEX_PATTERN = /^(?:[0-9a-fA-F]{2})*$/;

/** Parses an even-length hex string (either case) into bytes; anything else is a {@link MalformedFrameError}. */
export function hexToBytes(hex: string): Uint8Array {
  if (!HEX_PATTERN.test(hex)) throw new MalformedFrameError(`not an even-length hex string: "${hex}"`);
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/**
 * Copies `bytes[start, end)` into a new plain Uint8Array. Use this instead of `.slice()`, which on a Node
 * `Buffer` (what sockets deliver) returns a view that aliases the caller's memory, and a `Buffer` besides.
 */
export function copyBytes(bytes: Uint8Array, start?: number, end?: number): Uint8Array {
  return new Uint8Array(bytes.subarray(start, end));
}
