// The floor of the claim scenario's latency (bench/processes/claim-floor.ts): the same K devices connecting at
// once from one process at the same priority, with the same warm-up storms, the handshake's real RSA on both
// sides (the server's in Roost's worker pool), the same bytes, and the owner's stream read by the same
// owner's app; nothing else on the server. Its claim → stream p99 is what this machine leaves to any Node
// server in such a storm: if it is over the target, the target is out of reach here by measurement.
import { startChild } from "../lib/child.js";
import type { ScenarioContext } from "../lib/context.js";
import { sleep } from "../lib/context.js";
import type { BenchKey } from "../lib/keys.js";
import { deviceIds } from "../lib/keys.js";
import { summarize } from "../lib/stats.js";
import type { Summary } from "../lib/stats.js";
import type { ClaimFloorApi } from "../processes/claim-floor.js";
import type { OwnerAppApi } from "../processes/owner-app.js";

/** What the floor measured. */
export interface ClaimFloorResult {
  readonly devices: number;
  readonly failed: number;
  /** From each device's connect burst (with its claim code) to its `online` at the owner's app, ms. */
  readonly toStreamMs: Summary;
  readonly handshakeMs: Summary;
  readonly workers: number;
  /** The floor server's CPU over the measured storm, ms. */
  readonly serverCpuMs: number;
}

/** Runs `warmups` storms of `count` devices, then the measured one, against the floor server. */
export async function measureClaimFloor(
  context: ScenarioContext,
  options: { count: number; key: BenchKey; warmups: number; niceness: number },
): Promise<ClaimFloorResult> {
  const server = startChild<ClaimFloorApi>({
    entry: new URL("../processes/claim-floor.ts", import.meta.url),
    name: "claim floor server",
    packages: context.serverPackages,
  });
  const devices = startChild<ClaimFloorApi>({
    entry: new URL("../processes/claim-floor.ts", import.meta.url),
    name: "claim floor devices",
    ...(options.niceness ? { niceness: options.niceness } : {}),
  });
  const owner = startChild<OwnerAppApi>({
    entry: new URL("../processes/owner-app.ts", import.meta.url),
    name: "claim floor owner's app",
  });
  try {
    const served = await server.call("serve", { devicePublicKeyPem: options.key.publicKeyPem });
    const storm = (ids: readonly string[]) =>
      devices.call("storm", {
        port: served.port,
        serverPublicKeyPem: served.serverPublicKeyPem,
        devicePrivateKeyPem: options.key.privateKeyPem,
        ids,
      });
    for (let round = 0; round < options.warmups; round += 1) {
      await storm(deviceIds(options.count));
      await devices.call("closeAll", {});
    }
    await owner.call("open", {
      name: "floor",
      baseUrl: served.baseUrl,
      path: "/v1/devices/events/spark",
      token: "floor",
      keep: "online",
    });
    const ids = deviceIds(options.count);
    context.log(`claim floor: ${options.count} devices at once against a server of RSA and sockets only`);
    const before = await server.call("stats", {});
    const results = await storm(ids);
    const connected = results.filter((result) => result.connectedAt !== undefined);
    let arrived = new Map(Object.entries(await owner.call("kept", { name: "floor" })));
    const deadline = Date.now() + 10_000;
    while (arrived.size < connected.length && Date.now() < deadline) {
      await sleep(20);
      arrived = new Map(Object.entries(await owner.call("kept", { name: "floor" })));
    }
    const after = await server.call("stats", {});
    const toStream = connected.flatMap((result) => {
      const at = arrived.get(result.id);
      return at === undefined || result.connectedAt === undefined
        ? []
        : [Math.max(0, at - result.connectedAt)];
    });
    return {
      devices: options.count,
      failed: options.count - toStream.length,
      toStreamMs: summarize(toStream),
      handshakeMs: summarize(
        connected.map((result) => (result.connectedAt ?? result.startedAt) - result.startedAt),
      ),
      workers: served.workers,
      serverCpuMs: (after.cpuMicros - before.cpuMicros) / 1000,
    };
  } finally {
    await owner.exit();
    await devices.exit();
    await server.exit();
  }
}
