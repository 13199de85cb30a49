/**
 * Transport layers (a) and (b) of the Gen 2 TCP protocol after the handshake (STYLE B.9): each encrypted CoAP
 * message travels as `length u16BE || ciphertext`, and the ciphertext is AES-128-CBC with PKCS#7 padding and a
 * non-standard IV chain. Pure: AES itself is passed in as an {@link AesCbc} (Node's lives in `crypto.ts`).
 * @see spec/device-protocols.md B.3
 */
import { FrameTooLargeError, MalformedFrameError, TruncatedFrameError } from "../errors.js";
import { concatBytes, copyBytes } from "./bytes.js";

/** Size of the big-endian length prefix of every frame, in bytes. @see spec B.3 */
export const FRAME_HEADER_LENGTH = 2;

/** Largest body the 16-bit length prefix can announce. */
export const MAX_FRAME_BODY_LENGTH = 0xffff;

/**
 * Default cap on a frame body for {@link FrameSplitter}: a power of two above the largest LightSSL buffer of any
 * Gen 2 device (800 bytes on Photon/P1, 900 in the default config), so a desynchronized or hostile stream is cut
 * off after a kilobyte instead of buffering up to 64 KiB.
 * @see spec/device-protocols.md B.3 ("Device buffer limit")
 */
export const DEFAULT_MAX_FRAME_LENGTH = 1024;

/** AES block size, in bytes; also the IV size and the PKCS#7 block size. @see spec B.3 */
export const AES_BLOCK_LENGTH = 16;

/** AES-128 key size, in bytes. @see spec B.3 */
export const AES_128_KEY_LENGTH = 16;

/**
 * Prefixes `body` with its 2-byte big-endian length.
 * @throws FrameTooLargeError when `body` is longer than 65535 bytes.
 * @see spec/device-protocols.md B.3
 */
export function encodeFrame(body: Uint8Array): Uint8Array {
  if (body.length > MAX_FRAME_BODY_LENGTH) {
    throw new FrameTooLargeError(`frame body of ${body.length} bytes exceeds ${MAX_FRAME_BODY_LENGTH}`);
  }
  const out = new Uint8Array(FRAME_HEADER_LENGTH + body.length);
  new DataView(out.buffer).setUint16(0, body.length);
  out.set(body, FRAME_HEADER_LENGTH);
  return out;
}

/**
 * Reads exactly one complete frame and returns its body (a copy). Input shorter than the header or than the
 * announced length is a {@link TruncatedFrameError}; bytes after the body are a {@link MalformedFrameError}.
 * @see spec/device-protocols.md B.3
 */
export function decodeFrame(frame: Uint8Array): Uint8Array {
  if (frame.length < FRAME_HEADER_LENGTH) {
    throw new TruncatedFrameError(`frame of ${frame.length} bytes has no complete length prefix`);
  }
  const length = readLength(frame, 0);
  const end = FRAME_HEADER_LENGTH + length;
  if (frame.length < end) {
    throw new TruncatedFrameError(
      `frame announces ${length} body bytes but carries ${frame.length - FRAME_HEADER_LENGTH}`,
    );
  }
  if (frame.length > end) {
    throw new MalformedFrameError(`frame carries ${frame.length - end} bytes after its ${length}-byte body`);
  }
  return copyBytes(frame, FRAME_HEADER_LENGTH, end);
}

function readLength(input: Uint8Array, offset: number): number {
  return ((input[offset] ?? 0) << 8) | (input[offset + 1] ?? 0);
}

/** Options of {@link FrameSplitter}. */
export interface FrameSplitterOptions {
  /**
   * Largest frame body accepted; a length prefix above it throws {@link FrameTooLargeError}.
   * @default DEFAULT_MAX_FRAME_LENGTH (1024)
   */
  maxFrameLength?: number;
}

/**
 * Incremental frame parser (STYLE B.9 b): push TCP chunks in any split, get whole frame bodies out. After it
 * throws, the stream is out of sync and every later `push` throws the same error; close the connection.
 * @see spec/device-protocols.md B.3
 */
export class FrameSplitter {
  readonly #maxFrameLength: number;
  #pending: Uint8Array = new Uint8Array(0);
  #failure: FrameTooLargeError | undefined;

  constructor({ maxFrameLength = DEFAULT_MAX_FRAME_LENGTH }: FrameSplitterOptions = {}) {
    if (!Number.isInteger(maxFrameLength) || maxFrameLength < 0 || maxFrameLength > MAX_FRAME_BODY_LENGTH) {
      throw new RangeError(`maxFrameLength must be an integer in 0..${MAX_FRAME_BODY_LENGTH}`);
    }
    this.#maxFrameLength = maxFrameLength;
  }

  /** Bytes received but not yet returned as part of a complete frame. */
  get pendingLength(): number {
    return this.#pending.length;
  }

  /**
   * Adds a chunk and returns the bodies of all frames it completed, in order (each a copy).
   * @throws FrameTooLargeError when a length prefix exceeds `maxFrameLength`.
   */
  push(chunk: Uint8Array): Uint8Array[] {
    if (this.#failure) throw this.#failure;
    const input = this.#pending.length === 0 ? chunk : concatBytes(this.#pending, chunk);
    const frames: Uint8Array[] = [];
    let offset = 0;
    while (input.length - offset >= FRAME_HEADER_LENGTH) {
      const length = readLength(input, offset);
      if (length > this.#maxFrameLength) {
        this.#pending = new Uint8Array(0);
        this.#failure = new FrameTooLargeError(
          `frame announces ${length} body bytes; the limit is ${this.#maxFrameLength}`,
        );
        throw this.#failure;
      }
      const end = offset + FRAME_HEADER_LENGTH + length;
      if (input.length < end) break;
      frames.push(copyBytes(input, offset + FRAME_HEADER_LENGTH, end));
      offset = end;
    }
    this.#pending = copyBytes(input, offset);
    return frames;
  }

  /**
   * Declares the end of the stream.
   * @throws TruncatedFrameError when a partial frame is still buffered.
   */
  end(): void {
    if (this.#pending.length > 0) {
      throw new TruncatedFrameError(`stream ended inside a frame (${this.#pending.length} bytes buffered)`);
    }
  }
}

/**
 * Raw AES-128-CBC over whole blocks, without padding: the platform primitive {@link ChainedCipher} needs.
 * Supplied by the host (`createNodeAesCbc` in `crypto.ts`), because no synchronous AES is built into JavaScript.
 */
export interface AesCbc {
  /** Encrypts `data` (a multiple of 16 bytes) under `key` with `iv`. */
  encrypt(key: Uint8Array, iv: Uint8Array, data: Uint8Array): Uint8Array;
  /** Decrypts `data` (a multiple of 16 bytes) under `key` with `iv`. */
  decrypt(key: Uint8Array, iv: Uint8Array, data: Uint8Array): Uint8Array;
}

/** Options of {@link ChainedCipher}. */
export interface ChainedCipherOptions {
  /** The 16-byte AES-128 session key, `credentials.key`. */
  key: Uint8Array;
  /** The 16-byte initial IV, `credentials.iv`; both directions start from it. */
  iv: Uint8Array;
  /** The AES-128-CBC block primitive. */
  aes: AesCbc;
}

/**
 * Adds PKCS#7 padding: 1–16 bytes, each holding the pad length; an exact multiple of 16 gets a full block.
 * @see spec/device-protocols.md B.3, RFC 5652 §6.3
 */
export function addPkcs7Padding(plain: Uint8Array): Uint8Array {
  const padLength = AES_BLOCK_LENGTH - (plain.length % AES_BLOCK_LENGTH);
  const out = new Uint8Array(plain.length + padLength);
  out.set(plain);
  out.fill(padLength, plain.length);
  return out;
}

/**
 * Removes PKCS#7 padding, checking every pad byte (the device trusts the last byte unchecked; a server should
 * not). Returns a copy.
 * @throws MalformedFrameError when the input is not a whole number of blocks or the padding is invalid.
 * @see spec/device-protocols.md B.3, RFC 5652 §6.3
 */
export function removePkcs7Padding(padded: Uint8Array): Uint8Array {
  if (padded.length === 0 || padded.length % AES_BLOCK_LENGTH !== 0) {
    throw new MalformedFrameError(
      `padded length ${padded.length} is not a positive multiple of ${AES_BLOCK_LENGTH}`,
    );
  }
  const padLength = padded[padded.length - 1] ?? 0;
  if (padLength < 1 || padLength > AES_BLOCK_LENGTH) {
    throw new MalformedFrameError(`invalid PKCS#7 pad length ${padLength}`);
  }
  for (let i = padded.length - padLength; i < padded.length; i++) {
    if (padded[i] !== padLength) throw new MalformedFrameError("invalid PKCS#7 padding bytes");
  }
  return copyBytes(padded, 0, padded.length - padLength);
}

/**
 * One direction of the session encryption: AES-128-CBC with PKCS#7, where the IV of each message is the
 * **first** 16 bytes of the previous ciphertext of the same direction (not the last block, as real CBC
 * chaining would use). Keep one instance for sending and another for receiving: the chains are independent.
 * There is no MAC in this protocol, so decryption can only check the padding.
 * @see spec/device-protocols.md B.3 ("IV chaining, which is non-standard")
 */
export class ChainedCipher {
  readonly #key: Uint8Array;
  readonly #aes: AesCbc;
  #iv: Uint8Array;

  constructor({ key, iv, aes }: ChainedCipherOptions) {
    if (key.length !== AES_128_KEY_LENGTH) throw new RangeError("AES-128 key must be 16 bytes");
    if (iv.length !== AES_BLOCK_LENGTH) throw new RangeError("IV must be 16 bytes");
    this.#key = copyBytes(key);
    this.#iv = copyBytes(iv);
    this.#aes = aes;
  }

  /** The IV the next message of this direction will use (a copy). */
  get nextIv(): Uint8Array {
    return copyBytes(this.#iv);
  }

  /** Pads and encrypts one message, then chains: the next IV is the first block of the returned ciphertext. */
  encrypt(plain: Uint8Array): Uint8Array {
    const ciphertext = this.#aes.encrypt(this.#key, this.#iv, addPkcs7Padding(plain));
    this.#iv = copyBytes(ciphertext, 0, AES_BLOCK_LENGTH);
    return ciphertext;
  }

  /**
   * Decrypts and unpads one message, then chains: the next IV is the first block of `ciphertext`. When it
   * throws, the chain is left unchanged.
   * @throws MalformedFrameError when `ciphertext` is not a positive multiple of 16 bytes or the padding is bad.
   */
  decrypt(ciphertext: Uint8Array): Uint8Array {
    if (ciphertext.length === 0 || ciphertext.length % AES_BLOCK_LENGTH !== 0) {
      throw new MalformedFrameError(
        `ciphertext length ${ciphertext.length} is not a positive multiple of ${AES_BLOCK_LENGTH}`,
      );
    }
    const plain = removePkcs7Padding(this.#aes.decrypt(this.#key, this.#iv, ciphertext));
    this.#iv = copyBytes(ciphertext, 0, AES_BLOCK_LENGTH);
    return plain;
  }
}
