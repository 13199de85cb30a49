// The held connections of the connections scenario's floor (scenarios/ping-floor.ts): a device that pings as
// `CloudLink` does, and a server that answers each ping at once, on bare sockets.
import type { Socket } from "node:net";

/**
 * A held device's ping and the gateway's answer (spec B.3: a 2-byte length, then one AES block holding the
 * CoAP ping or its ACK): what each side writes, and reads, once per ping.
 */
export const GEN2_PING_FRAME_BYTES = 18;

/** Zeros to write: neither side allocates per ping. */
const FRAME = Buffer.alloc(GEN2_PING_FRAME_BYTES);

/** Server side: every whole ping frame read is answered with one frame of the same size, in one write. */
export function answerPings(socket: Socket): void {
  let buffered = 0;
  socket.on("data", (chunk: Buffer) => {
    buffered += chunk.length;
    while (buffered >= GEN2_PING_FRAME_BYTES) {
      buffered -= GEN2_PING_FRAME_BYTES;
      socket.write(FRAME);
    }
  });
}

/**
 * Device side: `CloudLink`'s keep-alive (packages/device/src/cloud-link.ts) on a bare socket: a timer checks
 * the silence every `min(1 s, intervalMs ÷ 3)` and pings after `intervalMs` of it, one ping outstanding at a
 * time; `onRoundTrip` gets each round trip, from the write to the `data` event that completes the answer, in
 * ms. The timer stops when the socket closes.
 */
export function pingAsCloudLink(socket: Socket, intervalMs: number, onRoundTrip: (ms: number) => void): void {
  let lastReceived = Date.now();
  let sentAt: number | undefined;
  let buffered = 0;
  socket.on("data", (chunk: Buffer) => {
    lastReceived = Date.now();
    buffered += chunk.length;
    if (sentAt !== undefined && buffered >= GEN2_PING_FRAME_BYTES) {
      buffered -= GEN2_PING_FRAME_BYTES;
      const roundTrip = performance.now() - sentAt;
      sentAt = undefined;
      onRoundTrip(roundTrip);
    }
  });
  const timer = setInterval(
    () => {
      if (sentAt !== undefined || Date.now() - lastReceived < intervalMs) return;
      sentAt = performance.now();
      socket.write(FRAME);
    },
    Math.min(1000, intervalMs / 3),
  );
  socket.once("close", () => clearInterval(timer));
}
