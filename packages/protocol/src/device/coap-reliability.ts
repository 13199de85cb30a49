/**
 * CoAP's reliability over an unreliable channel (Gen 3: one CoAP message per DTLS record), for either side:
 * our confirmable messages are sent again until acknowledged or given up, and the peer's repeated
 * confirmable messages are answered again from our reply without being handled twice.
 * @see RFC 7252 §4.2 (retransmission), §4.5 (duplicates); Device OS communication/inc/coap_channel.h
 */
import { COAP_TYPES } from "./coap.js";

/** Device OS's retransmission: from 4 s (ACK_TIMEOUT), doubling, 3 times (MAX_RETRANSMIT). */
export const COAP_RELIABILITY = { ackTimeoutMs: 4000, maxRetransmit: 3 } as const;

/** What the first four bytes of a CoAP message say; `undefined` if it is shorter than a header. */
export interface CoapHeader {
  readonly type: number;
  readonly id: number;
  /** An empty message (code 0.00, nothing after the header): a ping, or an ACK or RST with no response. */
  readonly empty: boolean;
}

export function coapHeader(message: Uint8Array): CoapHeader | undefined {
  if (message.length < 4) return undefined;
  return {
    type: ((message[0] ?? 0) >> 4) & 0b11,
    id: ((message[2] ?? 0) << 8) | (message[3] ?? 0),
    empty: (message[1] ?? 0) === 0 && message.length === 4,
  };
}

/** An empty ACK of message `id` (version 1, type ACK, no token, code 0.00). @see RFC 7252 §3 */
export function emptyCoapAck(id: number): Uint8Array {
  return Uint8Array.of(0x60, 0x00, id >> 8, id & 0xff);
}

/** RFC 7252 §4.8.2 MAX_TRANSMIT_WAIT: ACK_TIMEOUT × (2^(MAX_RETRANSMIT + 1) − 1) × ACK_RANDOM_FACTOR (1.5). */
export function maxTransmitWaitMs(ackTimeoutMs: number = COAP_RELIABILITY.ackTimeoutMs): number {
  return ackTimeoutMs * (2 ** (COAP_RELIABILITY.maxRetransmit + 1) - 1) * 1.5;
}

/** Marks a remembered reply that was an empty ACK (most replies): made again from the ID, not kept. */
const EMPTY_ACK = 0;

/** Options of {@link CoapReliability}. */
export interface CoapReliabilityOptions {
  /** Puts one message on the channel. */
  readonly send: (message: Uint8Array) => void;
  /** @default COAP_RELIABILITY.ackTimeoutMs */
  readonly ackTimeoutMs?: number;
  /** How many of the peer's recent confirmable message IDs are remembered. @default 64 */
  readonly dedupWindow?: number;
}

type Timer = ReturnType<typeof setTimeout>;

/** One channel's CoAP reliability: see the module comment. */
export class CoapReliability {
  readonly #send: (message: Uint8Array) => void;
  readonly #ackTimeoutMs: number;
  readonly #dedupWindow: number;
  /** Our confirmable messages awaiting their ACK, by message ID. */
  readonly #unacked = new Map<number, { timer: Timer; acked: (ok: boolean) => void }>();
  /** The peer's recent confirmable message IDs and our reply to each, once sent. */
  readonly #seen = new Map<number, Uint8Array | typeof EMPTY_ACK | undefined>();

  constructor(options: CoapReliabilityOptions) {
    this.#send = options.send;
    this.#ackTimeoutMs = options.ackTimeoutMs ?? COAP_RELIABILITY.ackTimeoutMs;
    this.#dedupWindow = options.dedupWindow ?? 64;
  }

  /**
   * Sends `message`. A reply to a remembered confirmable message is remembered with it. A confirmable message is
   * sent again until acknowledged; `acked` learns whether it was (false once the retransmissions are spent).
   */
  send(message: Uint8Array, acked?: (ok: boolean) => void): void {
    this.#send(message);
    const header = coapHeader(message);
    if (!header) return;
    if ((header.type === COAP_TYPES.ACK || header.type === COAP_TYPES.RST) && this.#seen.has(header.id))
      this.#seen.set(header.id, header.type === COAP_TYPES.ACK && header.empty ? EMPTY_ACK : message);
    if (header.type !== COAP_TYPES.CON) return;
    const earlier = this.#unacked.get(header.id);
    if (earlier) {
      clearTimeout(earlier.timer);
      earlier.acked(false);
    }
    let attempt = 0;
    // RFC 7252 §4.8: the first timeout is random in [ACK_TIMEOUT, 1.5 × ACK_TIMEOUT].
    let delay = this.#ackTimeoutMs * (1 + Math.random() / 2);
    const pending = { timer: undefined as unknown as Timer, acked: acked ?? (() => undefined) };
    const retry = () => {
      if (this.#unacked.get(header.id) !== pending) return;
      if (attempt >= COAP_RELIABILITY.maxRetransmit) {
        this.#unacked.delete(header.id);
        pending.acked(false);
        return;
      }
      attempt++;
      this.#send(message);
      delay *= 2;
      pending.timer = unref(setTimeout(retry, delay));
    };
    pending.timer = unref(setTimeout(retry, delay));
    this.#unacked.set(header.id, pending);
  }

  /**
   * Takes a message from the peer. An ACK or RST ends the retransmission of our message with its ID. Answers
   * `false` when the message must not be handled: an RST, or a confirmable message seen before (our reply, if we
   * sent one, is sent again).
   */
  receive(message: Uint8Array): boolean {
    const header = coapHeader(message);
    if (!header) return true;
    if (header.type === COAP_TYPES.ACK || header.type === COAP_TYPES.RST) {
      const pending = this.#unacked.get(header.id);
      if (pending) {
        clearTimeout(pending.timer);
        this.#unacked.delete(header.id);
        pending.acked(true);
      }
      return header.type === COAP_TYPES.ACK;
    }
    if (header.type === COAP_TYPES.CON) {
      if (this.#seen.has(header.id)) {
        const seen = this.#seen.get(header.id);
        const reply = seen === EMPTY_ACK ? emptyCoapAck(header.id) : seen;
        if (reply) this.#send(reply);
        return false;
      }
      this.#seen.set(header.id, undefined);
      if (this.#seen.size > this.#dedupWindow) {
        const oldest = this.#seen.keys().next().value;
        if (oldest !== undefined) this.#seen.delete(oldest);
      }
    }
    return true;
  }

  /** Stops every retransmission; each waiting `acked` learns `ok`. */
  stop(ok: boolean): void {
    const pending = [...this.#unacked.values()];
    this.#unacked.clear();
    for (const entry of pending) {
      clearTimeout(entry.timer);
      entry.acked(ok);
    }
  }
}

function unref(timer: Timer): Timer {
  (timer as { unref?: () => void }).unref?.();
  return timer;
}
