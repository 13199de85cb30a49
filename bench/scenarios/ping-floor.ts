// The floor of the connections scenario's ping round trips: the same number of device processes, at the same
// priority, from the same source addresses, holding as many connections that started at the same pace, each
// pinging as `CloudLink` does, against a bare `net` server that answers each ping's bytes at once
// (bench/processes/gen2-socket-floor.ts). No crypto, no protocol, no database on either side: the round trip
// that the machine, Node's sockets and the bench's way of standing in for devices leave to any server.
import type { ChildHandle } from "../lib/child.js";
import { startChild } from "../lib/child.js";
import type { ScenarioContext } from "../lib/context.js";
import { sleep } from "../lib/context.js";
import { machineIdleSeconds } from "../lib/idle-cpu.js";
import { summarize, worstLoopDelay } from "../lib/stats.js";
import type { Summary } from "../lib/stats.js";
import type { SocketFloorApi } from "../processes/gen2-socket-floor.js";
import { GEN2_CONNECT_EXCHANGE } from "../processes/gen2-socket-floor.js";

/** One step of the floor, as the connections scenario ran it against Roost. */
export interface PingFloorStep {
  /** Devices held after the step (all steps so far). */
  readonly devices: number;
  /** How long Roost took to connect the step's new devices: the floor's spread their starts as long. */
  readonly connectMs: number;
}

/** What the floor measured at one step. */
export interface PingFloorStepResult {
  readonly devices: number;
  readonly held: number;
  readonly dropped: number;
  readonly pings: Summary;
  readonly serverCores: number;
  readonly serverLoopDelayMs: { readonly p99: number; readonly max: number };
  readonly devicesLoopDelayMs: { readonly p99: number; readonly max: number };
  readonly machineIdleMsPerS: number | undefined;
}

/**
 * Plays the connections scenario's steps against the bare server: each step's new connections start evenly
 * over the time Roost took to connect them, then the same hold as Roost's (`holdMs`), whose ping round trips
 * are collected. The client processes are as many as Roost's device processes, at `niceness`.
 */
export async function measurePingFloor(
  context: ScenarioContext,
  options: {
    steps: readonly PingFloorStep[];
    clients: number;
    niceness: number;
    localAddresses: (client: number) => readonly string[];
    pingIntervalMs: number;
    holdMs: (last: boolean) => number;
  },
): Promise<PingFloorStepResult[]> {
  const server = startChild<SocketFloorApi>({
    entry: new URL("../processes/gen2-socket-floor.ts", import.meta.url),
    name: "ping floor server",
    packages: context.serverPackages,
  });
  const clients: ChildHandle<SocketFloorApi>[] = Array.from({ length: options.clients }, (_, index) =>
    startChild<SocketFloorApi>({
      entry: new URL("../processes/gen2-socket-floor.ts", import.meta.url),
      name: `ping floor client ${index + 1}`,
      ...(options.niceness > 0 ? { niceness: options.niceness } : {}),
    }),
  );
  const drain = async () => {
    const reports = await Promise.all(clients.map((client) => client.call("pings", {})));
    return {
      roundTrips: reports.flatMap((report) => report.roundTripsMs),
      loopDelayMs: worstLoopDelay(reports),
      held: reports.reduce((sum, report) => sum + report.held, 0),
      dropped: reports.reduce((sum, report) => sum + report.dropped, 0),
    };
  };
  try {
    const steps = GEN2_CONNECT_EXCHANGE;
    const { port } = await server.call("serve", { steps });
    const results: PingFloorStepResult[] = [];
    let previous = 0;
    for (const [index, step] of options.steps.entries()) {
      const last = index === options.steps.length - 1;
      // The step's new connections shared out as `split` shares Roost's devices among its processes.
      const added = step.devices - previous;
      const perClient = Math.ceil(added / clients.length);
      const share = (client: number) => Math.max(0, Math.min(perClient, added - client * perClient));
      previous = step.devices;
      await Promise.all(
        clients.map((client, clientIndex) =>
          client.call("hold", {
            port,
            steps,
            connections: share(clientIndex),
            spreadMs: step.connectMs,
            pingIntervalMs: options.pingIntervalMs,
            localAddresses: options.localAddresses(clientIndex),
          }),
        ),
      );
      await sleep(500);
      await drain();
      await server.call("loopDelay", {});
      const cpuStart = (await server.call("stats", {})).cpuMicros;
      const idleStart = machineIdleSeconds();
      const holdStarted = performance.now();
      await sleep(options.holdMs(last));
      const cpuEnd = (await server.call("stats", {})).cpuMicros;
      const idleEnd = machineIdleSeconds();
      const heldMs = performance.now() - holdStarted;
      const serverLoop = await server.call("loopDelay", {});
      const pings = await drain();
      results.push({
        devices: step.devices,
        held: pings.held,
        dropped: pings.dropped,
        pings: summarize(pings.roundTrips),
        serverCores: (cpuEnd - cpuStart) / 1000 / heldMs,
        serverLoopDelayMs: serverLoop,
        devicesLoopDelayMs: pings.loopDelayMs,
        machineIdleMsPerS:
          idleStart === undefined || idleEnd === undefined
            ? undefined
            : ((idleEnd.total - idleStart.total) * 1e6) / heldMs,
      });
    }
    await Promise.all(clients.map((client) => client.call("closeAll", {})));
    return results;
  } finally {
    await Promise.all([...clients.map((client) => client.exit()), server.exit()]);
  }
}
