/**
 * The device port under fuzzed connections, with a live device beside them: random bytes, truncated and
 * damaged handshakes, early closes. The gateway must close each bad connection (its own timeouts or a
 * refusal), never throw (an uncaught exception in the in-process cloud fails the run), and keep serving
 * the live device. Seeded and bounded; `npm run fuzz` runs it longer (ROOST_FUZZ_SCALE).
 */
import { connect } from "node:net";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningCloud } from "@roost/cloud";
import type { CloudLink } from "@roost/device";
import { api, cloudLink, newDevice, newUser, register, startTestCloud } from "@roost/tests/support";

const scale = Number(process.env.ROOST_FUZZ_SCALE ?? "1");
const SEED = Number(process.env.ROOST_FUZZ_SEED ?? "20261201");
const CONNECTIONS = Math.max(1, Math.round(300 * (scale > 0 ? scale : 1)));
/** Fuzzed connections open at once. */
const PARALLEL = 30;

describe("device port fuzz beside a live device", () => {
  let cloud: RunningCloud;
  let live: CloudLink;
  let token: string;
  let liveId: string;

  beforeAll(async () => {
    cloud = await startTestCloud({ deviceLimits: { handshakeTimeoutMs: 1000, helloTimeoutMs: 1000 } });
    token = (await newUser(cloud)).token;
    const device = newDevice();
    liveId = device.id;
    await register(cloud, token, { device });
    const code = (await api(cloud, { method: "POST", path: "/v1/device_claims", token })).body
      .claim_code as string;
    let stored: string | undefined = code;
    live = cloudLink(cloud, device, {
      claimCode: () => stored,
      onClaimed: () => (stored = undefined),
      functions: { echo: (argument) => argument.length },
    });
    const claimed = new Promise<void>((resolve) => live.once("claimed", resolve));
    await live.connect();
    await claimed;
  });
  afterAll(async () => {
    live.close();
    await cloud.close();
  });

  /** What a fuzzed connection sends: chunks of bytes, then it closes (half or fully) or just stops. */
  const plan = fc.record({
    chunks: fc.array(
      fc.oneof(
        fc.uint8Array({ maxLength: 64 }),
        // The handshake ciphertext is 256 bytes (spec B.2): give the parser a plausible length.
        fc.uint8Array({ minLength: 250, maxLength: 260 }),
        // Frames: a 2-byte length and a body that may or may not match it.
        fc
          .tuple(fc.integer({ min: 0, max: 0xffff }), fc.uint8Array({ maxLength: 80 }))
          .map(([length, body]) => new Uint8Array([length >> 8, length & 0xff, ...body])),
      ),
      { maxLength: 5 },
    ),
    ending: fc.constantFrom("end", "destroy", "silent"),
  });

  function run(connection: { chunks: Uint8Array[]; ending: string }): Promise<void> {
    return new Promise((resolve) => {
      const socket = connect({ host: "127.0.0.1", port: cloud.gateway?.port ?? 0 });
      socket.on("error", () => undefined);
      // Read (and drop) what the gateway sends, so that its close is seen.
      socket.on("data", () => undefined);
      socket.once("close", () => resolve());
      socket.once("connect", () => {
        for (const chunk of connection.chunks) socket.write(chunk);
        if (connection.ending === "end") socket.end();
        else if (connection.ending === "destroy") socket.destroy();
        // "silent": the gateway's own timeouts must close it.
      });
    });
  }

  it(`${CONNECTIONS} fuzzed connections are closed by the gateway; the live device keeps answering`, async () => {
    const plans = fc.sample(plan, { numRuns: CONNECTIONS, seed: SEED });
    for (let start = 0; start < plans.length; start += PARALLEL)
      await Promise.all(plans.slice(start, start + PARALLEL).map(run));
    // Every fuzzed connection has been closed by now; only the live device's session is left.
    expect(cloud.gateway?.stats.connected).toBe(1);
    expect(cloud.gateway?.session(liveId)).toBeDefined();
    const answer = await api(cloud, {
      method: "POST",
      path: `/v1/devices/${liveId}/echo`,
      token,
      json: { arg: "still here" },
    });
    expect(answer).toMatchObject({ status: 200, body: { return_value: 10, connected: true } });
  }, 300_000);
});
