// A storm from several device processes must connect exactly the devices asked for, each once, with no more
// handshakes in flight in all than asked for.
import { describe, expect, it } from "vitest";

import { connectEach } from "../lib/connect-each.js";
import { connectStorm, splitStorm } from "../lib/storm-split.js";
import type { StormConnector } from "../lib/storm-split.js";
import type { FleetConnectParams } from "../processes/device-fleet.js";

/** Devices `d0`, `d1`, … with keys in turn. */
function devices(count: number): { id: string; key: number }[] {
  return Array.from({ length: count }, (_, index) => ({ id: `d${index}`, key: index % 3 }));
}

/**
 * Device processes in this one, each connecting its devices through `connectEach` as the storm client does;
 * a connection holds its slot until the next turn of the event loop. Records every connection and the most
 * handshakes in flight, per process and in all.
 */
function recordingFleets(count: number) {
  const connected: string[] = [];
  const asked: FleetConnectParams[] = [];
  const peak = { total: 0, perProcess: Array.from({ length: count }, () => 0) };
  let total = 0;
  const fleets: StormConnector[] = Array.from({ length: count }, (_, index) => {
    let inFlight = 0;
    return {
      connect: (params) => {
        asked.push(params);
        return connectEach(params.devices, params.concurrency, (device) => async () => {
          inFlight += 1;
          total += 1;
          peak.perProcess[index] = Math.max(peak.perProcess[index] ?? 0, inFlight);
          peak.total = Math.max(peak.total, total);
          await new Promise((resolve) => setImmediate(resolve));
          connected.push(device.id);
          inFlight -= 1;
          total -= 1;
        });
      },
    };
  });
  return { fleets, connected, asked, peak };
}

describe("storm split", () => {
  it("gives every device to exactly one process, in order, and shares the in-flight count", () => {
    for (const count of [0, 1, 5, 7, 500, 4001])
      for (const processes of [1, 2, 3, 4])
        for (const concurrency of [1, 3, 64, 257]) {
          const list = devices(count);
          const shares = splitStorm(list, processes, concurrency);
          expect(shares).toHaveLength(processes);
          expect(shares.flatMap((share) => share.devices)).toEqual(list);
          const sizes = shares.map((share) => share.devices.length);
          expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
          const busy = shares.filter((share) => share.devices.length > 0);
          for (const share of busy) expect(share.concurrency).toBeGreaterThanOrEqual(1);
          const inFlight = busy.reduce((sum, share) => sum + share.concurrency, 0);
          // The whole count when every process has devices and at least one slot of it.
          if (busy.length === processes) expect(inFlight).toBe(Math.max(concurrency, processes));
          else expect(inFlight).toBeLessThanOrEqual(Math.max(concurrency, processes));
        }
  });

  it("refuses a count of processes or in-flight handshakes below one", () => {
    expect(() => splitStorm(devices(4), 0, 8)).toThrow(RangeError);
    expect(() => splitStorm(devices(4), 2, 0)).toThrow(RangeError);
  });

  it("connects exactly the requested devices, each once, from every process, within the in-flight count", async () => {
    const { fleets, connected, asked, peak } = recordingFleets(3);
    const list = devices(1000);
    const results = await connectStorm({
      fleets,
      target: { port: 1, serverPublicKeyPem: "key" },
      keys: ["a", "b", "c"],
      devices: list,
      concurrency: 64,
      pingIntervalMs: 60_000,
    });

    expect(results.map((result) => result.id).sort()).toEqual(list.map((device) => device.id).sort());
    expect([...connected].sort()).toEqual(list.map((device) => device.id).sort());
    expect(results.every((result) => result.connectedAt !== undefined)).toBe(true);
    expect(asked.map((params) => params.concurrency)).toEqual([22, 21, 21]);
    expect(asked.map((params) => params.devices.length)).toEqual([334, 333, 333]);
    // Each process filled its share of slots, and together they never exceeded the count asked for.
    expect(peak.perProcess).toEqual([22, 21, 21]);
    expect(peak.total).toBeLessThanOrEqual(64);
    expect(peak.total).toBeGreaterThan(22);
  });
});
