// The floor of the handshake scenario: the server CPU that Node's sockets alone take for one Gen 2 connection
// (bench/processes/gen2-socket-floor.ts). With the crypto ceiling it bounds the ratio any Node server can
// reach: crypto ÷ (crypto + floor).
import type { ChildHandle } from "../lib/child.js";
import { startChild } from "../lib/child.js";
import type { ScenarioContext } from "../lib/context.js";
import { sleep } from "../lib/context.js";
import type { ReportRow } from "../lib/report.js";
import { round } from "../lib/stats.js";
import type { SocketFloorApi } from "../processes/gen2-socket-floor.js";
import { GEN2_CONNECT_EXCHANGE } from "../processes/gen2-socket-floor.js";

/** What the floor measured. */
export interface SocketFloor {
  /** Server CPU per connection, accept to the last write (what the storm's window holds of a connection). */
  readonly msPerConnection: number;
  /** Server CPU per connection to close them afterwards (the storm's window holds no closes). */
  readonly closeMsPerConnection: number;
  readonly connections: number;
  readonly failed: number;
}

/** Waits until the floor server's `check` holds (at most 30 s). */
async function until(
  server: ChildHandle<SocketFloorApi>,
  check: (stats: { completed: number; open: number }) => boolean,
): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!check(await server.call("stats", {})) && Date.now() < deadline) await sleep(20);
}

/**
 * `connections` connections (after `warmup` that connect and leave), `concurrency` at a time from one client
 * process, each the socket exchange of one Gen 2 device's start; the bare server's CPU per connection.
 */
export async function measureSocketFloor(
  context: ScenarioContext,
  options: { connections: number; warmup: number; concurrency: number },
): Promise<SocketFloor> {
  const server = startChild<SocketFloorApi>({
    entry: new URL("../processes/gen2-socket-floor.ts", import.meta.url),
    name: "socket floor server",
    packages: context.serverPackages,
  });
  const client = startChild<SocketFloorApi>({
    entry: new URL("../processes/gen2-socket-floor.ts", import.meta.url),
    name: "socket floor client",
  });
  try {
    const steps = GEN2_CONNECT_EXCHANGE;
    const { port } = await server.call("serve", { steps });
    const drive = (connections: number) =>
      client.call("drive", { port, steps, connections, concurrency: options.concurrency });
    await drive(options.warmup);
    await client.call("closeAll", {});
    await until(server, (stats) => stats.open === 0);
    const before = await server.call("stats", {});
    const driven = await drive(options.connections);
    await until(server, (stats) => stats.completed >= before.completed + driven.completed);
    const after = await server.call("stats", {});
    await client.call("closeAll", {});
    await until(server, (stats) => stats.open === 0);
    const closed = await server.call("stats", {});
    return {
      msPerConnection: (after.cpuMicros - before.cpuMicros) / 1000 / driven.completed,
      closeMsPerConnection: (closed.cpuMicros - after.cpuMicros) / 1000 / driven.completed,
      connections: driven.completed,
      failed: driven.failed,
    };
  } finally {
    await Promise.all([client.exit(), server.exit()]);
  }
}

/**
 * The row that says whether the target is reachable at all: a server that did the crypto and nothing
 * but Node's socket work would spend crypto + floor per handshake, so no Node server's handshakes per
 * CPU-second can exceed ceiling × crypto ÷ (crypto + floor).
 */
export function floorRow(cryptoMs: number, floor: SocketFloor, targetRatio: number): ReportRow {
  return {
    scenario: "handshake",
    figure: "best ratio for Node: crypto / (crypto + socket floor)",
    value: `${round(floor.msPerConnection, 3)} ms socket floor per connection`,
    limit: `${round(cryptoMs, 3)} ms crypto (ceiling)`,
    ratio: cryptoMs / (cryptoMs + floor.msPerConnection),
    target: { better: "higher", ratio: targetRatio },
  };
}
