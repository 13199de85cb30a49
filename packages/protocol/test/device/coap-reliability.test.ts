import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { COAP_RELIABILITY, CoapReliability, emptyCoapAck, maxTransmitWaitMs } from "../../src/index.js";

/** A CoAP message of type `type` (0 CON, 2 ACK, 3 RST) with ID `id`, then code and payload bytes (`rest`). */
function coap(type: number, id: number, rest: readonly number[] = [0]): Uint8Array {
  const [code = 0, ...payload] = rest;
  return Uint8Array.of(0x40 | (type << 4), code, id >> 8, id & 0xff, ...payload);
}

// The retransmission schedule is RFC 7252 §4.8's, on a clock the test moves (fake timers): no real waiting.
describe("CoapReliability (RFC 7252 §4.2, §4.5, Device OS coap_channel.h)", () => {
  let sent: Uint8Array[];
  let channel: CoapReliability;
  beforeEach(() => {
    vi.useFakeTimers();
    sent = [];
    channel = new CoapReliability({
      send: (message) => sent.push(message),
      ackTimeoutMs: 1000,
      dedupWindow: 4,
    });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("sends a CON again from ACK_TIMEOUT, doubling, MAX_RETRANSMIT times, then gives up", () => {
    const outcome: boolean[] = [];
    const message = coap(0, 7, [0x02, 0xff, 0x41]);
    channel.send(message, (ok) => outcome.push(ok));
    expect(sent).toHaveLength(1);
    // The first timeout is random in [1, 1.5] × ACK_TIMEOUT; after 1.5 s it has passed whatever it was.
    vi.advanceTimersByTime(1500);
    expect(sent).toHaveLength(2);
    vi.advanceTimersByTime(3000);
    expect(sent).toHaveLength(3);
    vi.advanceTimersByTime(6000);
    expect(sent).toHaveLength(1 + COAP_RELIABILITY.maxRetransmit);
    expect(sent.every((each) => each === message)).toBe(true);
    expect(outcome).toEqual([]);
    vi.advanceTimersByTime(12_000);
    expect(outcome).toEqual([false]);
    expect(sent).toHaveLength(1 + COAP_RELIABILITY.maxRetransmit);
    // All of it within MAX_TRANSMIT_WAIT.
    expect(1500 + 3000 + 6000 + 12_000).toBeLessThanOrEqual(maxTransmitWaitMs(1000));
  });

  it("stops at the ACK (which the session also gets) and at an RST (which it does not)", () => {
    const outcome: [number, boolean][] = [];
    channel.send(coap(0, 1), (ok) => outcome.push([1, ok]));
    channel.send(coap(0, 2), (ok) => outcome.push([2, ok]));
    expect(channel.receive(coap(2, 1, [0x45, 0xff, 0x31]))).toBe(true);
    expect(channel.receive(coap(3, 2))).toBe(false);
    expect(outcome).toEqual([
      [1, true],
      [2, true],
    ]);
    vi.advanceTimersByTime(60_000);
    expect(sent).toHaveLength(2);
  });

  it("answers a repeated CON again with the reply it got, without handing it on twice", () => {
    const request = coap(0, 0x1234, [0x01, 0xff, 0x61]);
    expect(channel.receive(request)).toBe(true);
    // Not answered yet: a repeat is dropped quietly.
    expect(channel.receive(request)).toBe(false);
    expect(sent).toEqual([]);
    // Answered with an empty ACK: the repeat gets the same bytes again.
    channel.send(emptyCoapAck(0x1234));
    expect(channel.receive(request)).toBe(false);
    expect(sent).toEqual([emptyCoapAck(0x1234), emptyCoapAck(0x1234)]);
    // A piggybacked response is kept and sent again as it was.
    const other = coap(0, 0x0042, [0x01]);
    const response = coap(2, 0x0042, [0x45, 0xff, 0x32]);
    expect(channel.receive(other)).toBe(true);
    channel.send(response);
    expect(channel.receive(other)).toBe(false);
    expect(sent.at(-1)).toBe(response);
  });

  it("remembers only the latest IDs (its window), and a message shorter than a header is handed on", () => {
    for (let id = 0; id < 5; id++) expect(channel.receive(coap(0, id))).toBe(true);
    // ID 0 fell out of the window of 4; ID 4 is still in it.
    expect(channel.receive(coap(0, 0))).toBe(true);
    expect(channel.receive(coap(0, 4))).toBe(false);
    expect(channel.receive(Uint8Array.of(0x40, 0x00))).toBe(true);
  });

  it("settles every waiting CON when stopped, and sends nothing more", () => {
    const outcome: boolean[] = [];
    channel.send(coap(0, 1), (ok) => outcome.push(ok));
    channel.send(coap(0, 2), (ok) => outcome.push(ok));
    channel.stop(false);
    expect(outcome).toEqual([false, false]);
    vi.advanceTimersByTime(60_000);
    expect(sent).toHaveLength(2);
  });
});
