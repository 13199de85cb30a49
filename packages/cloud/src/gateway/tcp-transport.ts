import { createCipheriv, createDecipheriv } from "node:crypto";
import type { Cipher, Decipher } from "node:crypto";
import type { Duplex } from "node:stream";
import { unsafe as aesBlocks } from "@noble/ciphers/aes.js";

import type { DeviceMessage } from "@roost/protocol";
import {
  decodeMessage,
  FRAME_HEADER_LENGTH,
  MalformedFrameError,
  MAX_FRAME_BODY_LENGTH,
} from "@roost/protocol";

import type { CloseReason, DeviceTransport, MessageChannel, PingGate } from "./connection.js";
import { SessionEnd } from "./connection.js";

const BLOCK = 16;

/** How often busy sessions' AES contexts are looked at: a pair unused for a whole interval drops them. */
const CONTEXT_SWEEP_INTERVAL_MS = 1000;

/**
 * A session this young (its connect sequence: Hello, describe, events, subscriptions) keeps its contexts
 * from burst to burst; an older one keeps them only after a burst of more than {@link QUIET_BURST_MESSAGES}.
 */
const CONNECT_PHASE_MS = 10_000;
/**
 * A held device's ping and its answer: a burst that makes no contexts. Its messages are encrypted in
 * JavaScript (`@noble/ciphers`), which leaves V8 no native object to finalize.
 */
const QUIET_BURST_MESSAGES = 2;

let clock: () => number = () => performance.now();

/**
 * The block the quiet path encrypts or decrypts in place: noble's block functions read it as 32-bit words, so
 * it must be aligned, which a frame's bytes in a socket chunk need not be. One event loop, one at a time.
 */
const scratch = new Uint8Array(BLOCK);

/** @internal Tests: the clock (ms) that tells a session's age. */
export function useCipherClock(now: () => number): void {
  clock = now;
}

/** Session cipher pairs holding AES contexts, looked at by one process-wide sweep. */
const withContexts = new Set<SessionCipherPair>();
let sweepTimer: NodeJS.Timeout | undefined;

/**
 * Drops the AES contexts of every pair that has not used them since the previous sweep (the timer calls this
 * every {@link CONTEXT_SWEEP_INTERVAL_MS}; tests call it directly). Returns how many pairs still hold contexts.
 * @internal
 */
export function sweepCipherContexts(): number {
  for (const pair of withContexts) if (!pair.keepContexts()) withContexts.delete(pair);
  if (withContexts.size === 0 && sweepTimer) {
    clearInterval(sweepTimer);
    sweepTimer = undefined;
  }
  return withContexts.size;
}

function holdContexts(pair: SessionCipherPair): void {
  withContexts.add(pair);
  sweepTimer ??= setInterval(sweepCipherContexts, CONTEXT_SWEEP_INTERVAL_MS).unref();
}

function endBurst(pair: SessionCipherPair): void {
  if (pair.endBurst()) holdContexts(pair);
}

/**
 * A decrypted message without its PKCS#7 padding (spec B.3).
 * @throws MalformedFrameError when the padding is invalid.
 */
function unpad(padded: Uint8Array): Uint8Array {
  const length = padded.length;
  const padLength = padded[length - 1] ?? 0;
  if (padLength < 1 || padLength > BLOCK)
    throw new MalformedFrameError(`invalid PKCS#7 pad length ${padLength}`);
  for (let at = length - padLength; at < length; at++)
    if (padded[at] !== padLength) throw new MalformedFrameError("invalid PKCS#7 padding bytes");
  return padded.subarray(0, length - padLength);
}

/**
 * The two AES-128-CBC chains of a Gen 2 session in one 48-byte buffer (key, send IV, receive IV): each
 * message is padded (PKCS#7) and encrypted under the chain's IV, and the next IV of that direction is the
 * first block of the message's ciphertext (spec B.3). The same rule as `ChainedCipher` of `@roost/protocol`,
 * kept in one small buffer because a node holds tens of thousands of sessions (bench/README.md, connections).
 *
 * A busy session keeps one OpenSSL AES-128-CBC context per direction and each message is one call into it:
 * the context chains from the last block it saw, not from the protocol's IV (the first block of the previous
 * message), so the difference of the two is folded into the message's first block (CBC: C0 = E(P0 ^ IV)).
 * A device's connect sequence is about nine messages each way in a few bursts, and making a context cost more
 * than the AES itself (bench/README.md, handshake profile). A session in its first seconds keeps its
 * contexts from burst to burst, and so does an older one after a busy burst; one sweep for the whole process
 * drops those unused for a second. The first {@link QUIET_BURST_MESSAGES} messages of an older session's
 * burst (a held device's ping and its answer) make no context: each is encrypted under the chain's IV in
 * JavaScript. An OpenSSL context is a native object that V8 finalizes in a scavenge, on the event loop: a
 * held fleet's pings made thousands per scavenge, and finalizing them was up to half of the pause
 * (bench/README.md, connections). An idle session holds no context; after its first quiet message it keeps
 * the key's two JavaScript schedules (noble's block functions, `unsafe` in its API: a minor version may move
 * them, so `@noble/ciphers` is pinned to its minor), and each quiet message allocates only its output.
 */
export class SessionCipherPair {
  readonly #state: Buffer;
  #encryptor: Cipher | undefined;
  #decryptor: Decipher | undefined;
  /** While contexts live: the last block each context chained from (send at 0, receive at 16). */
  #chains: Buffer | undefined;
  #used = false;
  /**
   * The session key's AES schedules for the quiet path, expanded on its first quiet message and kept (~0.8 KiB measured):
   * `cbc()` expanded both on every call, and with its buffers that was 28 % of what a held fleet's pings
   * allocated (bench/README.md, sixth session).
   */
  #schedules: { readonly encrypt: Uint32Array; readonly decrypt: Uint32Array } | undefined;
  /** When the session started (the clock's ms), and messages in the current burst of an older session. */
  readonly #born = clock();
  #burstMessages = 0;

  constructor(credentials: { key: Uint8Array; iv: Uint8Array }) {
    if (credentials.key.length !== BLOCK || credentials.iv.length !== BLOCK)
      throw new RangeError("AES-128 key and IV must be 16 bytes each");
    const state = Buffer.allocUnsafeSlow(3 * BLOCK);
    state.set(credentials.key, 0);
    state.set(credentials.iv, BLOCK);
    state.set(credentials.iv, 2 * BLOCK);
    this.#state = state;
  }

  /** Whether this pair holds an AES context (tests). */
  get holdsContexts(): boolean {
    return this.#encryptor !== undefined || this.#decryptor !== undefined;
  }

  /**
   * The contexts' chain state for this message, or undefined for a quiet message (see the class): the first
   * messages of an older session's burst, when it holds no contexts.
   */
  #chainState(): Buffer | undefined {
    this.#used = true;
    if (this.#chains) return this.#chains;
    if (clock() - this.#born > CONNECT_PHASE_MS) {
      if (this.#burstMessages === 0) setImmediate(endBurst, this);
      this.#burstMessages += 1;
      if (this.#burstMessages <= QUIET_BURST_MESSAGES) return undefined;
    } else holdContexts(this);
    this.#chains = Buffer.allocUnsafe(2 * BLOCK);
    return this.#chains;
  }

  #keySchedules(): { readonly encrypt: Uint32Array; readonly decrypt: Uint32Array } {
    if (this.#schedules) return this.#schedules;
    const key = this.#state.subarray(0, BLOCK);
    this.#schedules = { encrypt: aesBlocks.expandKeyLE(key), decrypt: aesBlocks.expandKeyDecLE(key) };
    return this.#schedules;
  }

  /** Pads and encrypts one message to send; chains the send IV. */
  encrypt(plain: Uint8Array): Buffer {
    const state = this.#state;
    const chains = this.#chainState();
    const padLength = BLOCK - (plain.length % BLOCK);
    const length = plain.length + padLength;
    const input = Buffer.allocUnsafe(length);
    input.set(plain, 0);
    input.fill(padLength, plain.length);
    if (!chains) {
      // CBC, block by block, in place: C_i = E(P_i ^ C_(i-1)), C_(-1) the send IV.
      const keys = this.#keySchedules();
      for (let at = 0; at < length; at += BLOCK) {
        const previous = at === 0 ? state.subarray(BLOCK, 2 * BLOCK) : input.subarray(at - BLOCK, at);
        for (let i = 0; i < BLOCK; i++) scratch[i] = (input[at + i] ?? 0) ^ (previous[i] ?? 0);
        aesBlocks.encryptBlock(keys.encrypt, scratch);
        input.set(scratch, at);
      }
      state.set(input.subarray(0, BLOCK), BLOCK);
      return input;
    }
    if (!this.#encryptor) {
      const encryptor = createCipheriv(
        "aes-128-cbc",
        state.subarray(0, BLOCK),
        state.subarray(BLOCK, 2 * BLOCK),
      );
      encryptor.setAutoPadding(false);
      this.#encryptor = encryptor;
      state.copy(chains, 0, BLOCK, 2 * BLOCK);
    }
    // The context encrypts P0 ^ chain; the protocol wants P0 ^ send IV.
    for (let i = 0; i < BLOCK; i++) input[i] = (input[i] ?? 0) ^ (chains[i] ?? 0) ^ (state[BLOCK + i] ?? 0);
    const out = this.#encryptor.update(input);
    out.copy(state, BLOCK, 0, BLOCK);
    out.copy(chains, 0, length - BLOCK, length);
    return out;
  }

  /**
   * Decrypts and unpads one received message; chains the receive IV. When it throws, the chain is unchanged.
   * @throws MalformedFrameError when the ciphertext is not whole blocks or its padding is invalid.
   */
  decrypt(ciphertext: Uint8Array): Uint8Array {
    const length = ciphertext.length;
    if (length === 0 || length % BLOCK !== 0)
      throw new MalformedFrameError(`ciphertext length ${length} is not a positive multiple of 16`);
    const state = this.#state;
    const chains = this.#chainState();
    if (!chains) {
      // CBC, block by block: P_i = D(C_i) ^ C_(i-1), C_(-1) the receive IV.
      const keys = this.#keySchedules();
      const padded = new Uint8Array(length);
      for (let at = 0; at < length; at += BLOCK) {
        const previous =
          at === 0 ? state.subarray(2 * BLOCK, 3 * BLOCK) : ciphertext.subarray(at - BLOCK, at);
        scratch.set(ciphertext.subarray(at, at + BLOCK));
        aesBlocks.decryptBlock(keys.decrypt, scratch);
        for (let i = 0; i < BLOCK; i++) padded[at + i] = (scratch[i] ?? 0) ^ (previous[i] ?? 0);
      }
      const message = unpad(padded);
      state.set(ciphertext.subarray(0, BLOCK), 2 * BLOCK);
      return message;
    }
    if (!this.#decryptor) {
      const decryptor = createDecipheriv(
        "aes-128-cbc",
        state.subarray(0, BLOCK),
        state.subarray(2 * BLOCK, 3 * BLOCK),
      );
      decryptor.setAutoPadding(false);
      this.#decryptor = decryptor;
      state.copy(chains, BLOCK, 2 * BLOCK, 3 * BLOCK);
    }
    // Without padding, CBC returns every block at once: P0 = D(C0) ^ chain, to be D(C0) ^ receive IV.
    const padded = this.#decryptor.update(ciphertext);
    for (let i = 0; i < BLOCK; i++)
      padded[i] = (padded[i] ?? 0) ^ (chains[BLOCK + i] ?? 0) ^ (state[2 * BLOCK + i] ?? 0);
    // The context has seen this ciphertext whether or not it unpads.
    chains.set(ciphertext.subarray(length - BLOCK, length), BLOCK);
    const message = unpad(padded);
    state.set(ciphertext.subarray(0, BLOCK), 2 * BLOCK);
    return message;
  }

  /**
   * A held device's ping, answered without the session: when the one-block ciphertext at `bytes[at…at+16]`
   * decrypts to a CoAP ping (CON, code 0.00, no token: the only form RFC 7252 §4.3 allows an empty message),
   * returns its ACK's frame (the 2-byte length and one block) and moves both chains on. Anything else returns
   * undefined and leaves both chains as they were: the frame is then read as any other. Allocates the answer
   * only; works whether or not the pair holds contexts (they fold any difference of chains into the next
   * message: see the class).
   * @see spec/device-protocols.md B.3, B.4 (ping)
   */
  answerPing(bytes: Uint8Array, at: number): Buffer | undefined {
    const state = this.#state;
    const keys = this.#keySchedules();
    scratch.set(bytes.subarray(at, at + BLOCK));
    aesBlocks.decryptBlock(keys.decrypt, scratch);
    for (let i = 0; i < BLOCK; i++) {
      const plain = (scratch[i] ?? 0) ^ (state[2 * BLOCK + i] ?? 0);
      // Header byte 0: version 1, CON, token length 0; byte 1: code 0.00; then the message ID (2 and 3), then
      // the 12 bytes of padding that fill the block (PKCS#7: each 0x0c).
      if (i === 0 ? plain !== 0x40 : i === 1 ? plain !== 0x00 : i >= 4 && plain !== BLOCK - 4)
        return undefined;
      scratch[i] = plain;
    }
    state.set(bytes.subarray(at, at + BLOCK), 2 * BLOCK);
    // The ACK: version 1, ACK, token length 0; code 0.00; the ping's message ID (still in 2 and 3); padding.
    scratch[0] = 0x60;
    for (let i = 0; i < BLOCK; i++) scratch[i] = (scratch[i] ?? 0) ^ (state[BLOCK + i] ?? 0);
    aesBlocks.encryptBlock(keys.encrypt, scratch);
    state.set(scratch, BLOCK);
    const frame = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + BLOCK);
    frame.writeUInt16BE(BLOCK, 0);
    frame.set(scratch, FRAME_HEADER_LENGTH);
    return frame;
  }

  /**
   * @internal For the sweep: keeps the contexts if they were used since the last sweep (and says so), or
   * drops them.
   */
  keepContexts(): boolean {
    if (this.#used) {
      this.#used = false;
      return true;
    }
    this.#drop();
    return false;
  }

  /**
   * @internal At the end of an older session's burst: whether to keep the contexts (a busy burst: the sweep
   * looks after them from now on), or drops them.
   */
  endBurst(): boolean {
    // Past the quiet messages the burst made contexts (see #chainState).
    const busy = this.#burstMessages > QUIET_BURST_MESSAGES;
    this.#burstMessages = 0;
    if (busy) return true;
    this.#drop();
    return false;
  }

  #drop(): void {
    // `final` frees the OpenSSL context now; a dropped Cipher's context is otherwise freed by V8's weak
    // callbacks inside a scavenge, on the main thread, thousands at a time in a held fleet's scavenges
    // (bench/README.md, connections). With whole blocks and no padding it returns nothing and cannot fail.
    this.#encryptor?.final();
    this.#decryptor?.final();
    this.#encryptor = undefined;
    this.#decryptor = undefined;
    this.#chains = undefined;
  }
}

/**
 * A Gen 2 session's transport on its TCP stream: frames split as they arrive (spec B.3), decrypted and decoded
 * when the session asks for the next message; replies to one burst leave in one write. One object with a few
 * fields per held device, and nothing allocated while it waits but the wait's promise and timer.
 */
export class TcpTransport implements DeviceTransport, MessageChannel {
  readonly unreliable = false;
  readonly #socket: Duplex;
  readonly #ciphers: SessionCipherPair;
  readonly #maxFrameLength: number;
  /** Complete frame bodies not yet read by the session. */
  #frames: Uint8Array[] | undefined;
  /** Bytes of an incomplete frame. */
  #partial: Uint8Array | undefined;
  #failure: string | undefined;
  #ended = false;
  #corked = false;
  /** The session's pending `next`: settled when a frame, the end or the timeout comes. */
  #waiting:
    | {
        resolve(message: DeviceMessage): void;
        reject(error: SessionEnd): void;
        readonly timeoutReason: CloseReason;
        readonly pings: PingGate | undefined;
      }
    | undefined;
  /**
   * The silence timer of `next`, one for the life of the transport: each wait restarts it (`refresh`) rather
   * than making a new one, so that a held device's ping leaves no timer behind to outlive a scavenge; when it
   * fires with no wait pending it does nothing. Cleared when the stream ends.
   */
  #timer: NodeJS.Timeout | undefined;
  #timerMs = 0;

  constructor(options: {
    socket: Duplex;
    ciphers: SessionCipherPair;
    maxFrameLength: number;
    leftover: Uint8Array;
  }) {
    this.#socket = options.socket;
    this.#ciphers = options.ciphers;
    this.#maxFrameLength = options.maxFrameLength;
    if (options.leftover.length > 0) this.take(options.leftover);
    // Listeners shared by every transport find theirs on the socket: no closures per held device.
    (options.socket as TransportSocket)[TRANSPORT] = this;
    options.socket.on("data", onData);
    options.socket.on("close", onClose);
  }

  get channel(): MessageChannel {
    return this;
  }

  /** Sends one encoded CoAP message, encrypted and framed; messages of one burst leave in one write. */
  send(message: Uint8Array): void {
    const body = this.#ciphers.encrypt(message);
    const frame = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + body.length);
    frame.writeUInt16BE(body.length, 0);
    body.copy(frame, FRAME_HEADER_LENGTH);
    this.#write(frame);
  }

  #write(frame: Buffer): void {
    // Messages sent while handling one burst from the device (the connect sequence brings nine) leave in one
    // write: each socket write is a system call that cost a handshake more CPU than its AES (bench/README.md).
    if (!this.#corked) {
      this.#corked = true;
      this.#socket.cork();
      process.nextTick(uncork, this);
    }
    this.#socket.write(frame);
  }

  /** @internal */
  uncorkNow(): void {
    this.#corked = false;
    this.#socket.uncork();
  }

  close(): void {
    this.#socket.destroy();
  }

  /**
   * The next message; SessionEnd on a bad frame, the end of the stream, or `timeoutMs` of silence. With
   * `pings`, while it waits, a ping that arrives alone is answered here when the gate allows (see
   * {@link PingGate}), and the wait goes on, its silence counted from the ping.
   */
  next(timeoutMs: number, timeoutReason: CloseReason, pings?: PingGate): Promise<DeviceMessage> {
    const ready = this.#ready();
    if (ready) return "message" in ready ? Promise.resolve(ready.message) : Promise.reject(ready.error);
    return new Promise<DeviceMessage>((resolve, reject) => {
      this.#waiting = { resolve, reject, timeoutReason, pings };
      if (this.#timer && this.#timerMs === timeoutMs) this.#timer.refresh();
      else {
        clearTimeout(this.#timer);
        this.#timer = setTimeout(timedOut, timeoutMs, this);
        this.#timerMs = timeoutMs;
      }
    });
  }

  /** @internal The wait of `next` ran out. */
  timedOut(): void {
    const waiting = this.#waiting;
    if (!waiting) return;
    this.#waiting = undefined;
    waiting.reject(new SessionEnd(waiting.timeoutReason));
  }

  /** What `next` can answer at once: a message, a failure or the end; undefined when it must wait. */
  #ready(): { message: DeviceMessage } | { error: SessionEnd } | undefined {
    if (this.#failure !== undefined) return { error: new SessionEnd("bad_frame", this.#failure) };
    const frame = this.#frames?.shift();
    if (frame) {
      if (this.#frames?.length === 0) this.#frames = undefined;
      try {
        return { message: decodeMessage(this.#ciphers.decrypt(frame), "device") };
      } catch (error) {
        return { error: new SessionEnd("bad_frame", error instanceof Error ? error.message : String(error)) };
      }
    }
    if (this.#ended) return { error: new SessionEnd("device_closed") };
    return undefined;
  }

  /** Answers the pending `next`, if any, with what is ready now. */
  #wake(): void {
    const waiting = this.#waiting;
    if (!waiting) return;
    const ready = this.#ready();
    if (!ready) return;
    this.#waiting = undefined;
    if ("message" in ready) waiting.resolve(ready.message);
    else waiting.reject(ready.error);
  }

  /** @internal The stream ended. */
  ended(): void {
    this.#ended = true;
    this.#wake();
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /**
   * A one-block frame that arrived while the session waits with nothing queued: a ping the gate lets this
   * transport answer is answered (the session never sees it) and the silence timer starts again.
   */
  #answeredPing(input: Uint8Array, offset: number): boolean {
    const gate = this.#waiting?.pings;
    if (!gate?.answersPingAlone()) return false;
    const answer = this.#ciphers.answerPing(input, offset + FRAME_HEADER_LENGTH);
    if (!answer) return false;
    this.#timer?.refresh();
    // One write, joining the burst's if one is corked.
    this.#socket.write(answer);
    gate.answeredPing();
    return true;
  }

  /** @internal Splits arriving bytes into frame bodies (2-byte big-endian length, then the body). */
  take(chunk: Uint8Array): void {
    if (this.#failure !== undefined) return;
    let input = chunk;
    const partial = this.#partial;
    if (partial) {
      const joined = new Uint8Array(partial.length + chunk.length);
      joined.set(partial, 0);
      joined.set(chunk, partial.length);
      input = joined;
      this.#partial = undefined;
    }
    let offset = 0;
    let added = false;
    while (input.length - offset >= FRAME_HEADER_LENGTH) {
      const length = ((input[offset] ?? 0) << 8) | (input[offset + 1] ?? 0);
      if (length > this.#maxFrameLength || length > MAX_FRAME_BODY_LENGTH) {
        this.#failure = `frame announces ${length} body bytes; the limit is ${this.#maxFrameLength}`;
        this.#frames = undefined;
        this.#wake();
        return;
      }
      const end = offset + FRAME_HEADER_LENGTH + length;
      if (input.length < end) break;
      if (length === BLOCK && this.#frames === undefined && this.#answeredPing(input, offset)) {
        offset = end;
        continue;
      }
      // Copies (a Buffer's own slice is a view that would keep the whole read chunk alive).
      (this.#frames ??= []).push(copy(input, offset + FRAME_HEADER_LENGTH, end));
      added = true;
      offset = end;
    }
    if (offset < input.length) this.#partial = copy(input, offset, input.length);
    if (added) this.#wake();
  }
}

const TRANSPORT = Symbol("roost.tcpTransport");
type TransportSocket = Duplex & { [TRANSPORT]?: TcpTransport };

function timedOut(transport: TcpTransport): void {
  transport.timedOut();
}

function onData(this: TransportSocket, chunk: Buffer): void {
  this[TRANSPORT]?.take(chunk);
}

function onClose(this: TransportSocket): void {
  this[TRANSPORT]?.ended();
}

function copy(bytes: Uint8Array, start: number, end: number): Uint8Array {
  const out = new Uint8Array(end - start);
  out.set(bytes.subarray(start, end));
  return out;
}

function uncork(transport: TcpTransport): void {
  transport.uncorkNow();
}
