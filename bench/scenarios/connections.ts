// Scenario 3, connections: how many idle devices one node holds. Devices connect in steps up to N and stay,
// pinging as Photons do; at each step the server's memory growth per device, its CPU and the ping round
// trips are measured. The largest step held within the time bound is reported.
import { join } from "node:path";

import type { ChildHandle } from "../lib/child.js";
import type { ScenarioContext } from "../lib/context.js";
import { connectDevices, launchCloud, launchFleets, profiled, sleep } from "../lib/context.js";
import { machineIdleSeconds } from "../lib/idle-cpu.js";
import { deviceIds, deviceKeys } from "../lib/keys.js";
import type { ReportRow, ScenarioResult } from "../lib/report.js";
import { round, summarize, worstLoopDelay } from "../lib/stats.js";
import type { Summary } from "../lib/stats.js";
import type { CloudServerStats, HeapBreakdownEntry } from "../processes/cloud-server.js";
import type { DeviceFleetApi } from "../processes/device-fleet.js";
import { measurePingFloor } from "./ping-floor.js";
import type { PingFloorStepResult } from "./ping-floor.js";

/**
 * Devices one node should hold: as many as the open-file limit lets one process hold (issue 11), each device a
 * socket, less {@link SERVER_SPARE_FILES}; 10,000 when the limit is unknown or unlimited.
 */
const DEFAULT_DEVICES = 10_000;
/** Server memory per held device, in bytes, per the issue. */
const TARGET_BYTES_PER_DEVICE = 8 * 1024;
/** Ping round-trip p99, in ms, per the issue. */
const TARGET_PING_P99_MS = 20;

/** File descriptors kept free in the server for everything but device sockets (database, workers, IPC). */
const SERVER_SPARE_FILES = 1000;

/** Devices per device process: each holds one descriptor per device, well under the same limit. */
const DEVICES_PER_FLEET = 8000;

/** Loopback source addresses per device process: fewer than ~28,000 ephemeral ports are needed on each. */
const SOURCES_PER_FLEET = 4;

/**
 * Nice value of the device processes (Linux), as in the claim scenario: they stand in for devices on other
 * machines. At the server's priority, the server's main thread waited 95–125 ms a second for a core in the
 * last hold while the machine was two-thirds idle (bench/README.md). `ROOST_BENCH_FLEET_NICENESS=0` runs
 * them at the server's priority. The ping floor's clients run at the same value.
 */
const FLEET_NICENESS = Number(process.env.ROOST_BENCH_FLEET_NICENESS ?? 10);

/** `ROOST_BENCH_PING_FLOOR=0` skips the ping floor (bench/scenarios/ping-floor.ts) after Roost's steps. */
const PING_FLOOR = process.env.ROOST_BENCH_PING_FLOOR !== "0";

/** A heap snapshot is summed by constructor after the last step when at most this many devices are held. */
const HEAP_BREAKDOWN_MAX_DEVICES = 5000;

/** What one step measured. */
interface StepResult {
  readonly devices: number;
  readonly connected: number;
  readonly connectMs: number;
  readonly rssBytes: number;
  readonly heapUsedBytes: number;
  readonly bytesPerDevice: number;
  readonly heapBytesPerDevice: number;
  readonly holdMs: number;
  readonly serverCores: number;
  readonly pings: Summary;
  readonly disconnected: number;
  readonly disconnectReasons: Record<string, number>;
  /** Event-loop delay p99 / max during the hold, in ms, of the server and of the device processes. */
  readonly serverLoopDelayMs: { readonly p99: number; readonly max: number };
  /** The server's garbage collections during the hold (see the cloud-server's `stats`). */
  readonly serverGc: CloudServerStats["gc"];
  readonly devicesLoopDelayMs: { readonly p99: number; readonly max: number };
  /**
   * During the hold, in ms per second held: the server's main thread runnable but waiting for a core (Linux
   * schedstat), and the machine's idle CPU time over all its cores (/proc/stat); undefined elsewhere. A ping
   * late while both loops ran on time and the machine idled waited somewhere else (the kernel's network).
   */
  readonly serverRunQueueMsPerS: number | undefined;
  readonly machineIdleMsPerS: number | undefined;
}

async function drainPings(fleets: readonly ChildHandle<DeviceFleetApi>[]) {
  const reports = await Promise.all(fleets.map((fleet) => fleet.call("pings", {})));
  return {
    roundTrips: reports.flatMap((report) => report.roundTripsMs),
    loopDelayMs: worstLoopDelay(reports),
    connected: reports.reduce((sum, report) => sum + report.connected, 0),
    disconnected: reports.reduce((sum, report) => sum + report.disconnected, 0),
    reasons: reports.reduce<Record<string, number>>((sum, report) => {
      for (const [reason, count] of Object.entries(report.disconnectReasons))
        sum[reason] = (sum[reason] ?? 0) + count;
      return sum;
    }, {}),
  };
}

/** Runs the connections scenario. */
export async function runConnections(context: ScenarioContext): Promise<ScenarioResult> {
  const { quick } = context;
  const fileLimit = context.machine.openFilesLimit;
  // The server holds every device's socket; each device process holds its share.
  const cap = Number.isFinite(fileLimit) ? fileLimit - SERVER_SPARE_FILES : DEFAULT_DEVICES;
  const wanted = context.maxDevices ?? (quick ? 500 : cap);
  const maxDevices = Math.min(wanted, cap);
  const targetDevices = quick ? 500 : cap;
  if (maxDevices < wanted)
    context.log(`open-file limit ${fileLimit} caps the devices at ${maxDevices} (raise it with ulimit -n)`);
  const fleetCount = Math.max(1, context.machine.cores - 1, Math.ceil(maxDevices / DEVICES_PER_FLEET));
  // Device process k connects from 127.0.(k+1).1…4, so no source address runs out of ephemeral ports.
  const localAddresses = (fleet: number) =>
    Array.from({ length: SOURCES_PER_FLEET }, (_, index) => `127.0.${fleet + 1}.${index + 1}`);
  const steps = [...new Set([0.1, 0.25, 0.5, 1].map((share) => Math.max(1, Math.round(maxDevices * share))))];
  const pingIntervalMs = quick ? 1000 : 15_000;
  // Long enough for every device to ping at least once (twice at the last step), plus a margin.
  const holdMs = (last: boolean) => (last ? 2 : 1) * pingIntervalMs + (quick ? 500 : 2000);
  const timeBoundMs = quick ? 45_000 : 360_000;
  const warmup = quick ? 100 : 300;

  const keys = await deviceKeys(8);
  const ids = deviceIds(warmup + maxDevices);
  const assigned = ids.map((id, index) => ({ id, key: index % keys.length }));
  const cloud = await launchCloud(context, {
    scenario: "connections",
    // Devices ping after 15 s of silence; the gateway's default 31 s idle limit suits that. Quick runs ping
    // every second, so a shorter limit still leaves two pings of slack.
    params: quick ? { idleTimeoutMs: 5000 } : {},
  });
  const fleets = launchFleets(fleetCount);
  const server = cloud.process;
  const started = Date.now();
  let outcome: { rows: ReportRow[]; raw: Record<string, unknown>; profile: string | undefined };
  const results: StepResult[] = [];
  let held = 0;
  try {
    for (let start = 0; start < assigned.length; start += 5000)
      await server.call("insertDevices", {
        keys: keys.map((key) => key.publicKeyPem),
        devices: assigned.slice(start, start + 5000),
      });
    const connect = (devices: typeof assigned) =>
      connectDevices({ cloud, fleets, keys, devices, concurrency: 64, pingIntervalMs, localAddresses });
    // Warm-up: the first connections compile the server's code paths; that memory is not per device.
    await connect(assigned.slice(0, warmup));
    await Promise.all(fleets.map((fleet) => fleet.call("closeAll", {})));
    await sleep(1000);
    const baseline = await server.call("stats", { gc: true });
    // Small runs also sum the heap by constructor, before and after, to say where a session's bytes go. Taking
    // a snapshot grows the process, so the RSS figures of such a run read high.
    const breakdown = maxDevices <= HEAP_BREAKDOWN_MAX_DEVICES;
    const heapFile = (what: string) =>
      join(context.resultsDir, "heap", `${context.stamp}-connections-${what}.heapsnapshot`);
    const heapBefore = breakdown
      ? await server.call("heapBreakdown", { file: heapFile("baseline"), top: 0 })
      : undefined;
    context.log(`baseline RSS ${round(baseline.rssBytes / 2 ** 20)} MiB; steps ${steps.join(", ")}`);

    let stopReason = "all steps held";
    const { profile } = await profiled(context, {
      cloud,
      name: "connections",
      measure: async () => {
        let previous = 0;
        for (const [index, step] of steps.entries()) {
          const last = index === steps.length - 1;
          if (Date.now() - started + holdMs(last) > timeBoundMs) {
            stopReason = `time bound (${timeBoundMs / 1000} s) reached before ${step} devices`;
            break;
          }
          const connectStarted = performance.now();
          const connected = await connect(assigned.slice(warmup + previous, warmup + step));
          const connectMs = performance.now() - connectStarted;
          previous = step;
          const failures = connected.filter((result) => result.error !== undefined).length;
          await sleep(500);
          const memory = await server.call("stats", { gc: true });
          await drainPings(fleets);
          const holdStart = await server.call("stats", {});
          const idleStart = machineIdleSeconds();
          const holdStarted = performance.now();
          await sleep(holdMs(last));
          const holdEnd = await server.call("stats", {});
          const idleEnd = machineIdleSeconds();
          const heldMs = performance.now() - holdStarted;
          const perSecondHeld = (ms: number) => (ms * 1000) / heldMs;
          const pings = await drainPings(fleets);
          const grown = memory.rssBytes - baseline.rssBytes;
          const result: StepResult = {
            devices: step,
            connected: pings.connected,
            connectMs,
            rssBytes: memory.rssBytes,
            heapUsedBytes: memory.heapUsedBytes,
            bytesPerDevice: grown / step,
            heapBytesPerDevice: (memory.heapUsedBytes - baseline.heapUsedBytes) / step,
            holdMs: heldMs,
            serverCores: (holdEnd.cpuMicros - holdStart.cpuMicros) / 1000 / heldMs,
            pings: summarize(pings.roundTrips),
            disconnected: pings.disconnected,
            disconnectReasons: pings.reasons,
            serverLoopDelayMs: { p99: holdEnd.loopDelayMs.p99, max: holdEnd.loopDelayMs.max },
            serverGc: holdEnd.gc,
            devicesLoopDelayMs: pings.loopDelayMs,
            serverRunQueueMsPerS:
              holdStart.mainThreadRunQueueMicros === undefined ||
              holdEnd.mainThreadRunQueueMicros === undefined
                ? undefined
                : perSecondHeld(
                    (holdEnd.mainThreadRunQueueMicros - holdStart.mainThreadRunQueueMicros) / 1000,
                  ),
            machineIdleMsPerS:
              idleStart === undefined || idleEnd === undefined
                ? undefined
                : perSecondHeld((idleEnd.total - idleStart.total) * 1000),
          };
          results.push(result);
          context.log(
            `${step} devices: connected in ${round(connectMs / 1000, 1)} s, ` +
              `${round(result.bytesPerDevice / 1024, 2)} KiB/device, ping p99 ${round(result.pings.p99)} ms ` +
              `(${result.pings.count} pings), server ${round(result.serverCores, 3)} cores, loop delay p99/max ` +
              `server ${round(result.serverLoopDelayMs.p99)}/${round(result.serverLoopDelayMs.max)} ms, ` +
              `devices ${round(result.devicesLoopDelayMs.p99)}/${round(result.devicesLoopDelayMs.max)} ms, ` +
              `server GC ${result.serverGc.markCompacts} mark-compacts (longest ${round(result.serverGc.longestMarkCompactMs)} ms), ` +
              `${result.serverGc.scavenges} scavenges (longest ${round(result.serverGc.longestScavengeMs)} ms), ` +
              `server waiting for a core ${round(result.serverRunQueueMsPerS ?? Number.NaN)} ms/s, ` +
              `machine idle ${round(result.machineIdleMsPerS ?? Number.NaN)} ms/s, ` +
              `${failures} failed, ${pings.disconnected} dropped`,
          );
          // "Held" means every device connected and none dropped while idle.
          if (failures > 0 || pings.disconnected > 0 || pings.connected < step) {
            stopReason = `${failures} connects failed and ${pings.disconnected} devices dropped at ${step}`;
            break;
          }
          held = step;
        }
      },
    });

    // Where the heap of the held sessions goes: what grew by constructor since the baseline, per device.
    let heap: (HeapBreakdownEntry & { bytesPerDevice: number; perDevice: number })[] | undefined;
    if (heapBefore && held > 0) {
      const after = await server.call("heapBreakdown", { file: heapFile(String(held)), top: 0 });
      const before = new Map(heapBefore.map((entry) => [`${entry.type}/${entry.name}`, entry]));
      heap = after
        .map((entry) => {
          const old = before.get(`${entry.type}/${entry.name}`);
          const count = entry.count - (old?.count ?? 0);
          const selfBytes = entry.selfBytes - (old?.selfBytes ?? 0);
          return { ...entry, count, selfBytes, bytesPerDevice: selfBytes / held, perDevice: count / held };
        })
        .filter((entry) => Math.abs(entry.bytesPerDevice) >= 4)
        .sort((a, b) => b.selfBytes - a.selfBytes);
      const total = heap.reduce((sum, entry) => sum + entry.bytesPerDevice, 0);
      context.log(`heap growth by constructor with ${held} devices held: ${round(total)} B/device in all`);
      for (const entry of heap.slice(0, 30))
        context.log(
          `  ${round(entry.bytesPerDevice).toString().padStart(6)} B  ${round(entry.perDevice, 2)} × ${entry.type} ${entry.name}`.trimEnd(),
        );
    }

    const final = results.at(-1);
    const heldResult = results.find((result) => result.devices === held) ?? final;
    const rows: ReportRow[] = heldResult
      ? [
          {
            scenario: "connections",
            figure: "devices held",
            value: `${held}`,
            limit: `${targetDevices} (target: the open-file limit less ${SERVER_SPARE_FILES})`,
            ratio: held / targetDevices,
            target: { better: "higher" as const, ratio: 1 },
          },
          {
            scenario: "connections",
            figure: `server memory per device at ${heldResult.devices}`,
            value: `${round(heldResult.bytesPerDevice / 1024, 2)} KiB`,
            limit: `${TARGET_BYTES_PER_DEVICE / 1024} KiB (target)`,
            ratio: heldResult.bytesPerDevice / TARGET_BYTES_PER_DEVICE,
            target: { better: "lower" as const, ratio: 1 },
          },
          {
            scenario: "connections",
            figure: `ping round trip p99 at ${heldResult.devices}`,
            value: `${round(heldResult.pings.p99)} ms (p50 ${round(heldResult.pings.p50)} ms)`,
            limit: `${TARGET_PING_P99_MS} ms (target)`,
            ratio: heldResult.pings.p99 / TARGET_PING_P99_MS,
            target: { better: "lower" as const, ratio: 1 },
          },
          {
            scenario: "connections",
            figure: `server CPU holding ${heldResult.devices}`,
            value: `${round(100 * heldResult.serverCores, 2)}% of a core`,
            limit: `pings every ${pingIntervalMs / 1000} s`,
          },
        ]
      : [];
    outcome = {
      profile,
      rows,
      raw: {
        targetDevices: maxDevices,
        held,
        stopReason,
        pingIntervalMs,
        fleetProcesses: fleetCount,
        localAddressesPerFleet: SOURCES_PER_FLEET,
        heapBreakdown: heap,
        openFilesLimit: fileLimit,
        baselineRssBytes: baseline.rssBytes,
        baselineHeapUsedBytes: baseline.heapUsedBytes,
        fleetNiceness: FLEET_NICENESS,
        steps: results,
      },
    };
  } finally {
    await Promise.all(fleets.map((fleet) => fleet.exit(20_000)));
    await server.exit(20_000);
  }

  // The same steps against a bare server, once Roost and its devices have gone: what the ping round trip
  // would be if the server cost nothing.
  const heldSteps = results.filter((result) => result.devices <= held);
  const roostAtHeld = heldSteps.at(-1);
  let floor: PingFloorStepResult[] | undefined;
  if (PING_FLOOR && roostAtHeld) {
    context.log(`ping floor: the same ${heldSteps.length} steps against a bare server`);
    floor = await measurePingFloor(context, {
      steps: heldSteps.map((result) => ({ devices: result.devices, connectMs: result.connectMs })),
      clients: fleetCount,
      niceness: FLEET_NICENESS,
      localAddresses,
      pingIntervalMs,
      holdMs: (last) => holdMs(last && heldSteps.length === steps.length),
    });
    for (const step of floor)
      context.log(
        `  floor ${step.devices} devices: ping p50/p99 ${round(step.pings.p50, 2)}/${round(step.pings.p99)} ms ` +
          `(${step.pings.count} pings), server ${round(step.serverCores, 3)} cores, loop delay p99/max server ` +
          `${round(step.serverLoopDelayMs.p99)}/${round(step.serverLoopDelayMs.max)} ms, devices ` +
          `${round(step.devicesLoopDelayMs.p99)}/${round(step.devicesLoopDelayMs.max)} ms, machine idle ` +
          `${round(step.machineIdleMsPerS ?? Number.NaN)} ms/s, ${step.held} held, ${step.dropped} dropped`,
      );
    const floorAtHeld = floor.at(-1);
    if (floorAtHeld)
      outcome.rows.push(
        {
          scenario: "connections",
          figure: `ping round trip p99 at ${floorAtHeld.devices}, bare Node floor`,
          value: `${round(floorAtHeld.pings.p99)} ms (p50 ${round(floorAtHeld.pings.p50)} ms)`,
          limit: `${TARGET_PING_P99_MS} ms (target)`,
          ratio: floorAtHeld.pings.p99 / TARGET_PING_P99_MS,
        },
        {
          scenario: "connections",
          figure: `ping round trip p99 at ${floorAtHeld.devices}, Roost ÷ floor`,
          value: `${round(roostAtHeld.pings.p99)} ms`,
          limit: `${round(floorAtHeld.pings.p99)} ms (floor)`,
          ratio: roostAtHeld.pings.p99 / floorAtHeld.pings.p99,
        },
      );
  }
  return {
    name: "connections",
    profiles: [outcome.profile],
    rows: outcome.rows,
    raw: { ...outcome.raw, pingFloor: floor },
  };
}
