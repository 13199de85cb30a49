/**
 * A reader and a writer for the TLS presentation language (RFC 5246 §4): big-endian integers of 1, 2, 3, 6
 * and 8 bytes and vectors with a 1-, 2- or 3-byte length prefix. Short input throws
 * {@link TruncatedFrameError}; nothing is ever clamped.
 */
import { MalformedFrameError, TruncatedFrameError } from "../errors.js";

/** Reads TLS wire structures from a byte array, front to back. */
export class WireReader {
  readonly #bytes: Uint8Array;
  #offset = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  /** Bytes not yet read. */
  get remaining(): number {
    return this.#bytes.length - this.#offset;
  }

  /** Where the next read starts. */
  get offset(): number {
    return this.#offset;
  }

  #take(length: number, what: string): Uint8Array {
    if (length > this.remaining)
      throw new TruncatedFrameError(`${what}: needs ${length} bytes, ${this.remaining} left`);
    const out = this.#bytes.subarray(this.#offset, this.#offset + length);
    this.#offset += length;
    return out;
  }

  /** An unsigned integer of `size` bytes (at most 6, so it stays exact in a number). */
  uint(size: 1 | 2 | 3 | 6, what: string): number {
    let value = 0;
    for (const byte of this.#take(size, what)) value = value * 256 + byte;
    return value;
  }

  /** Exactly `length` bytes, copied. */
  bytes(length: number, what: string): Uint8Array {
    return this.#take(length, what).slice();
  }

  /** A vector whose length is given by a `prefix`-byte integer before it. */
  vector(prefix: 1 | 2 | 3, what: string): Uint8Array {
    return this.bytes(this.uint(prefix, `${what} length`), what);
  }

  /** Everything left, copied. */
  rest(): Uint8Array {
    return this.#take(this.remaining, "rest").slice();
  }
}

/** Builds TLS wire structures into a growing byte array. */
export class WireWriter {
  #bytes = new Uint8Array(64);
  #length = 0;

  #reserve(extra: number): void {
    if (this.#length + extra <= this.#bytes.length) return;
    const grown = new Uint8Array(Math.max(this.#bytes.length * 2, this.#length + extra));
    grown.set(this.#bytes.subarray(0, this.#length));
    this.#bytes = grown;
  }

  /** An unsigned integer of `size` bytes. */
  uint(size: 1 | 2 | 3 | 6, value: number): this {
    if (!Number.isInteger(value) || value < 0 || value >= 2 ** (8 * size))
      throw new MalformedFrameError(`${value} does not fit ${size} bytes`);
    this.#reserve(size);
    for (let i = size - 1; i >= 0; i--) {
      this.#bytes[this.#length + i] = value % 256;
      value = Math.floor(value / 256);
    }
    this.#length += size;
    return this;
  }

  /** Raw bytes. */
  bytes(bytes: Uint8Array): this {
    this.#reserve(bytes.length);
    this.#bytes.set(bytes, this.#length);
    this.#length += bytes.length;
    return this;
  }

  /** A vector with its `prefix`-byte length first. */
  vector(prefix: 1 | 2 | 3, bytes: Uint8Array): this {
    return this.uint(prefix, bytes.length).bytes(bytes);
  }

  /** The bytes written so far (a copy). */
  finish(): Uint8Array {
    return this.#bytes.slice(0, this.#length);
  }
}
