/**
 * Bounds on new Gen 2 device connections (gateway/handshake-admission.ts): handshakes in progress per source
 * address and failed handshakes per source address, checked at accept before any work. The rule on its own,
 * then over real sockets from several loopback addresses against a real gateway.
 */
import { randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { connect } from "node:net";
import type { Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { CONTENT_TYPE, DTLS_1_2, encodeRecord } from "@roost/protocol";
import { until } from "@roost/tests/support";

import { HandshakeAdmission } from "../src/gateway/handshake-admission.js";
import type { RunningCloud } from "../src/index.js";
import { startTestCloud } from "./helpers.js";

const LIMITS = {
  maxHandshakes: 5,
  maxHandshakesPerAddress: 2,
  maxHandshakeFailuresPerAddress: 3,
  handshakeFailureWindowMs: 60_000,
};

describe("HandshakeAdmission", () => {
  it("caps handshakes in progress per address and in all, and takes new ones as others finish", () => {
    const admission = new HandshakeAdmission(LIMITS, () => 0);
    expect(admission.admit("a")).toBe("admitted");
    expect(admission.admit("a")).toBe("admitted");
    expect(admission.admit("a")).toBe("too_many_handshakes");
    expect(["b", "b", "c"].map((address) => admission.admit(address))).toEqual([
      "admitted",
      "admitted",
      "admitted",
    ]);
    expect(admission.admit("d")).toBe("too_many_handshakes");
    expect(admission.inProgress).toBe(5);
    admission.finished("a", false);
    expect(admission.admit("d")).toBe("admitted");
    expect(admission.admit("a")).toBe("too_many_handshakes");
  });

  it("refuses an address whose handshakes failed too often until its window ends, and says when it starts", () => {
    let now = 1_000;
    const admission = new HandshakeAdmission(LIMITS, () => now);
    const reached: boolean[] = [];
    for (let i = 0; i < 3; i++) {
      expect(admission.admit("a")).toBe("admitted");
      reached.push(admission.finished("a", true));
    }
    expect(reached).toEqual([false, false, true]);
    expect(admission.admit("a")).toBe("too_many_failures");
    expect(admission.admit("b")).toBe("admitted");
    // Successes do not count; the window runs from the first failure.
    now += LIMITS.handshakeFailureWindowMs - 1;
    expect(admission.admit("a")).toBe("too_many_failures");
    now += 1;
    expect(admission.admit("a")).toBe("admitted");
    expect(admission.finished("a", false)).toBe(false);
    expect(admission.admit("a")).toBe("admitted");
  });
});

/** A raw TCP connection from `localAddress`: resolves with the first bytes the server sends, or null if it closes first. */
function open(port: number, localAddress: string): Promise<{ socket: Socket; first: Buffer | null }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1", localAddress });
    socket.once("error", reject);
    socket.once("data", (data: Buffer) => resolve({ socket, first: data }));
    socket.once("close", () => resolve({ socket, first: null }));
  });
}

describe("the Gen 2 gateway's admission of new connections", () => {
  let cloud: RunningCloud;
  const opened: Socket[] = [];

  beforeAll(async () => {
    cloud = await startTestCloud({ deviceLimits: LIMITS });
  });
  afterAll(async () => {
    for (const socket of opened) socket.destroy();
    await cloud.close();
  });

  const gateway = () => {
    if (!cloud.gateway) throw new Error("no gateway");
    return cloud.gateway;
  };
  const attempt = async (localAddress: string) => {
    const result = await open(gateway().port, localAddress);
    opened.push(result.socket);
    return result;
  };

  it("closes a third handshake in progress from one address before sending it anything; other addresses go on", async () => {
    const first = await attempt("127.0.0.2");
    const second = await attempt("127.0.0.2");
    // Admitted: the server's nonce came (spec/device-protocols.md B.2 step 1).
    expect(first.first?.length).toBe(40);
    expect(second.first?.length).toBe(40);
    const third = await attempt("127.0.0.2");
    expect(third.first).toBeNull();
    expect(gateway().stats.closed.too_many_handshakes).toBe(1);
    expect((await attempt("127.0.0.3")).first?.length).toBe(40);

    // One of the two ends (a handshake cut short counts as a bad one): the address may start another.
    first.socket.destroy();
    await until(() => (gateway().stats.closed.bad_handshake ?? 0) >= 1, "the first connection's end");
    expect((await attempt("127.0.0.2")).first?.length).toBe(40);
  });

  it("refuses an address after three failed handshakes (garbage for a ciphertext), not the others", async () => {
    const before = gateway().stats.closed.bad_handshake ?? 0;
    for (let i = 1; i <= 3; i++) {
      const { socket, first } = await attempt("127.0.0.4");
      expect(first?.length).toBe(40);
      const closed = new Promise((resolve) => socket.once("close", resolve));
      socket.write(randomBytes(256));
      await closed;
      await until(() => (gateway().stats.closed.bad_handshake ?? 0) >= before + i, `failed handshake ${i}`);
    }
    expect((await attempt("127.0.0.4")).first).toBeNull();
    expect(gateway().stats.closed.too_many_failures).toBe(1);
    expect((await attempt("127.0.0.5")).first?.length).toBe(40);
  });
});

describe("the Gen 3 gateway's lookups of stored sessions for records it cannot place", () => {
  let cloud: RunningCloud;

  beforeAll(async () => {
    cloud = await startTestCloud({ deviceUdpPort: 0, deviceLimits: LIMITS });
  });
  afterAll(async () => {
    await cloud.close();
  });

  const gateway = () => {
    if (!cloud.gateway?.udpPort) throw new Error("no UDP gateway");
    return { ...cloud.gateway, udpPort: cloud.gateway.udpPort };
  };

  /** Sends one application-data record under a made-up Connection ID from `localAddress`. */
  const madeUp = (localAddress: string) =>
    new Promise<void>((resolve, reject) => {
      const socket = createSocket("udp4");
      const record = encodeRecord({
        type: CONTENT_TYPE.cid,
        version: DTLS_1_2,
        epoch: 1,
        sequenceNumber: 1,
        cid: randomBytes(8),
        fragment: randomBytes(40),
      });
      socket.bind(0, localAddress, () =>
        socket.send(record, gateway().udpPort, "127.0.0.1", (error) => {
          socket.close();
          if (error) reject(error);
          else resolve();
        }),
      );
    });

  it("stops looking up for an address whose made-up Connection IDs missed three times; other addresses go on", async () => {
    for (let i = 1; i <= 3; i++) {
      await madeUp("127.0.0.6");
      await until(() => gateway().stats.dtlsLookupMisses >= i, `lookup ${i} missed`);
    }
    expect(gateway().stats.dtlsLookupsRefused).toBe(0);
    await madeUp("127.0.0.6");
    await until(() => gateway().stats.dtlsLookupsRefused >= 1, "the fourth lookup refused");
    expect(gateway().stats.dtlsLookupMisses).toBe(3);
    await madeUp("127.0.0.7");
    await until(() => gateway().stats.dtlsLookupMisses >= 4, "another address's lookup");
    expect(gateway().stats.dtlsLookupsRefused).toBe(1);
  });
});
