// The claim floor must do the handshake's real RSA on both sides (a device with another key cannot follow it)
// and announce each device that sent its connect burst on the owner's stream, by its authenticated ID.
import { afterEach, describe, expect, it } from "vitest";

import type { StreamEvent } from "../lib/api.js";
import { openEventStream } from "../lib/api.js";
import type { ClaimFloorServer } from "../lib/claim-floor.js";
import { ClaimFloorDevices, startClaimFloorServer } from "../lib/claim-floor.js";
import { deviceIds, deviceKeys } from "../lib/keys.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Waits until `events` holds `count` events (each arrives on a later turn). */
async function until(events: StreamEvent[], count: number): Promise<void> {
  while (events.length < count) await new Promise((resolve) => setImmediate(resolve));
}

describe("claim floor", () => {
  it("announces each device after its real handshake and connect burst; another key fails the handshake", async () => {
    const [key, otherKey] = await deviceKeys(2);
    if (!key || !otherKey) throw new Error("no keys");
    const server: ClaimFloorServer = await startClaimFloorServer({
      devicePublicKeyPem: key.publicKeyPem,
      workers: 1,
    });
    cleanups.push(() => server.close());
    const devices = new ClaimFloorDevices();
    cleanups.push(() => devices.closeAll());
    const events: StreamEvent[] = [];
    const stream = openEventStream({
      baseUrl: server.baseUrl,
      path: "/v1/devices/events/spark",
      token: "floor",
      onEvent: (event) => events.push(event),
    });
    cleanups.push(() => stream.close());
    await stream.ready;

    const ids = deviceIds(5);
    const storm = (devicePrivateKeyPem: string, stormIds: readonly string[]) =>
      devices.storm({
        port: server.port,
        serverPublicKeyPem: server.serverPublicKeyPem,
        devicePrivateKeyPem,
        ids: stormIds,
      });
    const results = await storm(key.privateKeyPem, ids);
    expect(results.map((result) => result.error)).toEqual(ids.map(() => undefined));
    for (const result of results) expect(result.connectedAt).toBeGreaterThanOrEqual(result.startedAt);
    await until(events, ids.length);
    expect(events.map((event) => event.name)).toEqual(ids.map(() => "spark/status"));
    expect(events.map((event) => event.data.data)).toEqual(ids.map(() => "online"));
    expect(new Set(events.map((event) => event.data.coreid))).toEqual(new Set(ids));

    // The server encrypts the session to the registered key: a device holding another cannot open it.
    const [stranger] = deviceIds(1);
    const refused = await storm(otherKey.privateKeyPem, [stranger as string]);
    expect(refused[0]?.error).toMatch(/RSA decryption failed/);
    const [late] = deviceIds(1);
    await storm(key.privateKeyPem, [late as string]);
    await until(events, ids.length + 1);
    expect(events.at(-1)?.data.coreid).toBe(late);
    expect(events.map((event) => event.data.coreid)).not.toContain(stranger);
    expect(server.bursts()).toBe(ids.length + 1);
  });
});
