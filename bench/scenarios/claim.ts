// Scenario 2, claim: K devices are claimed at once, as K people each setting one up would. Each latency
// runs from the moment a device has sent its claim code to when its owner's stream says it is online, and
// to when it first appears in its owner's device list.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";

import { createClaimCode, createUser, listDevices } from "../lib/api.js";
import { startChild, wallClock } from "../lib/child.js";
import { connectDevices, launchCloud, launchFleets, profiled, sleep } from "../lib/context.js";
import type { ScenarioContext } from "../lib/context.js";
import { machineIdleSeconds } from "../lib/idle-cpu.js";
import { deviceIds, deviceKeys } from "../lib/keys.js";
import type { ScenarioResult } from "../lib/report.js";
import { round, summarize } from "../lib/stats.js";
import type { Summary } from "../lib/stats.js";
import { histogramSvg } from "../lib/svg-histogram.js";
import type { CloudServerStats } from "../processes/cloud-server.js";
import type { OwnerAppApi } from "../processes/owner-app.js";
import { measureClaimFloor } from "./claim-floor.js";

/** p99 from claim to the owner's stream that issue 11 asks for at K = 200, in ms. */
const TARGET_STREAM_P99_MS = 10;

/** p99 from claim to the owner's device list at K = 200 (issue 11), in ms. */
const TARGET_LIST_P99_MS = 20;

/** The owner's stream the latency ends on: system events of the owner's devices. @see spec/cloud-api.md §5.1 */
const STREAM_PATH = "/v1/devices/events/spark";

/**
 * How often the owner's app reads its device list. The list latency is known to within this interval, so
 * it must be well under the 20 ms target (it was 20 ms, which alone made a p99 under 20 ms unmeasurable).
 * Polling much faster perturbs what is measured: every 5 ms, the poller's lists (and on PostgreSQL their
 * pool connections) slowed the claims themselves on a loaded machine. 10 ms is the compromise.
 * `ROOST_BENCH_CLAIM_LIST_POLL_MS=0` does not poll (no list figure): what the polls cost the stream figure.
 */
const LIST_POLL_INTERVAL_MS = Number(process.env.ROOST_BENCH_CLAIM_LIST_POLL_MS ?? 10);
const LIST_POLLED = LIST_POLL_INTERVAL_MS > 0;

/**
 * Nice value of the device process (Linux). Its 200 devices stand in for devices on other machines: at the
 * server's priority their RSA and CoAP took ~0.8 of a core from the server under test on two cores. The
 * owner's app (stream reader) and the list poller (this process) keep the server's priority: they measure.
 * `ROOST_BENCH_FLEET_NICENESS=0` runs the devices at the server's priority, as before (to compare).
 */
const FLEET_NICENESS = Number(process.env.ROOST_BENCH_FLEET_NICENESS ?? 10);

/** Storms of K devices claimed by other users before the measured one (warm-up). */
const WARMUP_STORMS = Number(process.env.ROOST_BENCH_CLAIM_WARMUPS ?? 3);

/** How long the claims may take before the scenario gives up on the missing ones. */
const CLAIM_TIMEOUT_MS = 30_000;

/** The server's main thread over the storm: its CPU, its time runnable but waiting for a core, the machine's idle. */
export interface MainThreadShare {
  readonly wallMs: number;
  readonly cpuMs: number;
  readonly runQueueMs: number;
  /** Idle time of all the machine's cores together over the same window. */
  readonly idleMs: number;
}

/** {@link MainThreadShare} from the server's stats and the machine's idle seconds before and after; undefined off Linux. */
export function mainThreadShare(
  before: { server: CloudServerStats; idle: { total: number } | undefined },
  after: { server: CloudServerStats; idle: { total: number } | undefined },
  wallMs: number,
): MainThreadShare | undefined {
  const cpu0 = before.server.mainThreadCpuMicros;
  const cpu1 = after.server.mainThreadCpuMicros;
  const wait0 = before.server.mainThreadRunQueueMicros;
  const wait1 = after.server.mainThreadRunQueueMicros;
  if (cpu0 === undefined || cpu1 === undefined || wait0 === undefined || wait1 === undefined)
    return undefined;
  if (!before.idle || !after.idle) return undefined;
  return {
    wallMs,
    cpuMs: (cpu1 - cpu0) / 1000,
    runQueueMs: (wait1 - wait0) / 1000,
    idleMs: (after.idle.total - before.idle.total) * 1000,
  };
}

/** Calls `run` on every item with at most `concurrency` in flight. */
async function pool<T>(
  items: readonly T[],
  concurrency: number,
  run: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) await run(items[next++] as T);
    }),
  );
}

/**
 * `ROOST_BENCH_CLAIM_FLOOR=0` skips the claim floor (bench/scenarios/claim-floor.ts) after Roost's storm. The
 * floor has no database: it runs once, on the SQLite pass.
 */
const CLAIM_FLOOR = process.env.ROOST_BENCH_CLAIM_FLOOR !== "0";

/** Runs the claim scenario: Roost's storm, then (on SQLite) the floor of the same storm. */
export async function runClaim(context: ScenarioContext): Promise<ScenarioResult> {
  const roost = await runClaimOnRoost(context);
  if (!CLAIM_FLOOR || context.databaseUrl !== undefined) return roost;
  const [key] = await deviceKeys(1);
  if (!key) throw new Error("no device key");
  const floor = await measureClaimFloor(context, {
    count: context.quick ? 50 : 200,
    key,
    warmups: WARMUP_STORMS,
    niceness: FLEET_NICENESS,
  });
  const roostP99 = (roost.raw.claimToStreamMs as Summary).p99;
  const ms = (value: number) => `${round(value)} ms`;
  return {
    ...roost,
    rows: [
      ...roost.rows,
      {
        scenario: "claim",
        figure: `floor: RSA and sockets only, claim -> stream p50/p95/p99`,
        value: `${ms(floor.toStreamMs.p50)} / ${ms(floor.toStreamMs.p95)} / ${ms(floor.toStreamMs.p99)}`,
        limit:
          `${floor.devices - floor.failed} of ${floor.devices}, ${floor.workers} crypto workers; ` +
          `target ${TARGET_STREAM_P99_MS} ms ${floor.toStreamMs.p99 <= TARGET_STREAM_P99_MS ? "reachable" : "out of reach"}`,
        ratio: roostP99 / floor.toStreamMs.p99,
      },
    ],
    raw: { ...roost.raw, claimFloor: floor },
  };
}

async function runClaimOnRoost(context: ScenarioContext): Promise<ScenarioResult> {
  const count = context.quick ? 50 : 200;
  const keys = await deviceKeys(8);
  const ids = deviceIds(count);
  const cloud = await launchCloud(context, { scenario: "claim" });
  const [fleet] = launchFleets(1, { niceness: FLEET_NICENESS });
  if (!fleet) throw new Error("no device process");
  const owner = startChild<OwnerAppApi>({
    entry: new URL("../processes/owner-app.ts", import.meta.url),
    name: "owner's app",
  });
  let polling = true;
  try {
    const { url } = cloud.address;
    const publicKeys = keys.map((key) => key.publicKeyPem);
    /** Registers `list` and makes one claim code per device for the token's user. */
    const prepare = async (list: readonly string[], owner: string) => {
      const devices = list.map((id, index) => ({ id, key: index % keys.length }));
      await cloud.process.call("insertDevices", { keys: publicKeys, devices });
      const codes: string[] = [];
      await pool(list, 16, async () => {
        codes.push(((await createClaimCode(url, owner)) as { claim_code: string }).claim_code);
      });
      return devices.map((device, index) => ({ ...device, claimCode: codes[index] }));
    };
    const claimDevices = (devices: Awaited<ReturnType<typeof prepare>>) =>
      connectDevices({
        cloud,
        fleets: [fleet],
        keys,
        devices,
        concurrency: devices.length,
        pingIntervalMs: 60_000,
      });

    // Warm-up, by other users: a server that has run for a while has compiled its claim path. It takes
    // storms of the measured size: after one storm of 50, V8 was still optimizing the session path
    // (TurboFan jobs of `handshake`, `runDeviceSession`, `decodeCoapMessage`, …) on its helper threads
    // during the measured storm, ~0.3 s of CPU taken from the cores the claims wait for.
    for (let round = 0; round < WARMUP_STORMS; round += 1) {
      const warmupOwner = await createUser(url);
      await claimDevices(await prepare(deviceIds(count), warmupOwner));
      await fleet.call("closeAll", {});
    }

    const token = await createUser(url);
    const assigned = await prepare(ids, token);

    // The owner's app watches the stream (in a process of its own) and this process polls the device list
    // every LIST_POLL_INTERVAL_MS.
    await owner.call("open", { name: "claims", baseUrl: url, path: STREAM_PATH, token, keep: "online" });
    /** What the owner's app has kept of stream `name` so far, by device. */
    const kept = async (name: string) => new Map(Object.entries(await owner.call("kept", { name })));
    let streamAt = new Map<string, number>();
    const listAt = new Map<string, number>();
    let listPolls = 0;
    const poller = (async () => {
      while (polling && LIST_POLLED) {
        const next = performance.now() + LIST_POLL_INTERVAL_MS;
        const list = await listDevices(url, token);
        const receivedAt = wallClock();
        listPolls += 1;
        for (const device of list) if (!listAt.has(device.id)) listAt.set(device.id, receivedAt);
        await sleep(Math.max(0, next - performance.now()));
      }
    })();

    context.log(`${count} devices connect at once, each presenting its claim code`);
    // This process polls the list: its own lateness is in the list figure.
    const runnerDelay = monitorEventLoopDelay({ resolution: 1 });
    const { result: measured, profile } = await profiled(context, {
      cloud,
      name: "claim",
      measure: async () => {
        const before = { server: await cloud.process.call("stats", {}), idle: machineIdleSeconds() };
        const startedAt = performance.now();
        runnerDelay.enable();
        const results = await claimDevices(assigned);
        const deadline = Date.now() + CLAIM_TIMEOUT_MS;
        streamAt = await kept("claims");
        while ((streamAt.size < count || (LIST_POLLED && listAt.size < count)) && Date.now() < deadline) {
          await sleep(20);
          streamAt = await kept("claims");
        }
        const wallMs = performance.now() - startedAt;
        runnerDelay.disable();
        const after = { server: await cloud.process.call("stats", {}), idle: machineIdleSeconds() };
        return { results, mainThread: mainThreadShare(before, after, wallMs) };
      },
    });
    const { results: connects, mainThread } = measured;
    polling = false;
    await poller;
    const confirmedAt = await fleet.call("claimed", {});

    // The floor of the same path without a claim: each (now claimed) device publishes one event at once,
    // and the owner's stream receives it. Same processes, same sockets, no handshakes and no transaction.
    await owner.call("open", {
      name: "relay",
      baseUrl: url,
      path: "/v1/devices/events/bench",
      token,
      keep: "relay",
    });
    const published = await fleet.call("publish", { name: "bench/relay" });
    const relayDeadline = Date.now() + 10_000;
    let relay: number[] = [];
    while (relay.length < published && Date.now() < relayDeadline) {
      await sleep(20);
      relay = [...(await kept("relay")).values()];
    }

    const sentAt = new Map(
      connects.flatMap((result) =>
        result.connectedAt === undefined ? [] : [[result.id, result.connectedAt]],
      ),
    );
    const latencies = (arrived: ReadonlyMap<string, number>) =>
      ids.flatMap((id) => {
        const sent = sentAt.get(id);
        const at = arrived.get(id);
        return sent === undefined || at === undefined ? [] : [Math.max(0, at - sent)];
      });
    const toStream = latencies(streamAt);
    const toList = latencies(listAt);
    const toDevice = latencies(new Map(Object.entries(confirmedAt)));
    const handshakeMs = connects.flatMap((result) =>
      result.connectedAt === undefined ? [] : [result.connectedAt - result.startedAt],
    );
    const stream99 = summarize(toStream);
    const list99 = summarize(toList);
    const relaySummary = summarize(relay);

    const svgName = `claim-latency-${context.stamp}${context.quick ? "-quick" : ""}.svg`;
    const svgPath = join(context.resultsDir, svgName);
    writeFileSync(
      svgPath,
      histogramSvg({
        title: `Claim latency: ${count} devices claimed at once`,
        subtitle:
          `${context.machine.cpuModel}, ${context.machine.cores} cores, Node ${context.machine.node}; ` +
          `${context.stamp}${context.quick ? " (quick)" : ""}`,
        unit: "milliseconds after the device sent its claim code",
        series: [
          { label: "owner's event stream: spark/status online", color: "#2563eb", values: toStream },
          ...(LIST_POLLED
            ? [{ label: "owner's GET /v1/devices lists it", color: "#f59e0b", values: toList }]
            : []),
        ],
        markers: [
          { label: "stream p50", value: round(stream99.p50), color: "#1e3a8a" },
          { label: "stream p99", value: round(stream99.p99), color: "#1e3a8a" },
          ...(LIST_POLLED ? [{ label: "list p99", value: round(list99.p99), color: "#b45309" }] : []),
          { label: "stream target p99", value: TARGET_STREAM_P99_MS, color: "#dc2626", dashed: true },
          { label: "list target p99", value: TARGET_LIST_P99_MS, color: "#dc2626", dashed: true },
        ],
      }),
    );

    const ms = (value: number) => `${round(value)} ms`;
    return {
      name: "claim",
      profiles: [profile],
      files: [svgPath],
      rows: [
        {
          scenario: "claim",
          figure: `claim -> stream p50/p95/p99 (K=${count})`,
          value: `${ms(stream99.p50)} / ${ms(stream99.p95)} / ${ms(stream99.p99)}`,
          limit: `p99 ${TARGET_STREAM_P99_MS} ms (target)`,
          ratio: stream99.p99 / TARGET_STREAM_P99_MS,
          target: { better: "lower", ratio: 1 },
        },
        ...(LIST_POLLED
          ? [
              {
                scenario: "claim",
                figure: `claim -> list p50/p95/p99 (K=${count})`,
                value: `${ms(list99.p50)} / ${ms(list99.p95)} / ${ms(list99.p99)}`,
                limit: `p99 ${TARGET_LIST_P99_MS} ms (target)`,
                ratio: list99.p99 / TARGET_LIST_P99_MS,
                target: { better: "lower" as const, ratio: 1 },
              },
            ]
          : []),
        {
          scenario: "claim",
          figure: "device connect (handshake) p50/p99",
          value: `${ms(summarize(handshakeMs).p50)} / ${ms(summarize(handshakeMs).p99)}`,
          limit: `${count} handshakes at once`,
        },
        ...(mainThread
          ? [
              {
                scenario: "claim",
                figure: "server main thread: CPU / waiting for a core",
                value: `${ms(mainThread.cpuMs)} / ${ms(mainThread.runQueueMs)}`,
                limit: `${ms(mainThread.wallMs)} storm, ${ms(mainThread.idleMs)} of ${context.machine.cores} cores idle`,
                ratio: mainThread.runQueueMs / (mainThread.cpuMs + mainThread.runQueueMs),
              },
            ]
          : []),
        {
          scenario: "claim",
          figure: "list poller (bench runner) loop delay p99/max",
          value: `${ms(runnerDelay.percentile(99) / 1e6)} / ${ms(runnerDelay.max / 1e6)}`,
          limit: "in the list figure",
        },
        {
          scenario: "claim",
          figure: "device event -> stream p50/p99 (floor)",
          value: `${ms(relaySummary.p50)} / ${ms(relaySummary.p99)}`,
          limit: `claim p50 ${ms(stream99.p50)}`,
          ratio: stream99.p50 / relaySummary.p50,
        },
      ],
      raw: {
        devices: count,
        warmupDevices: count * WARMUP_STORMS,
        fleetNiceness: FLEET_NICENESS,
        claimedInStream: toStream.length,
        listedInList: toList.length,
        confirmedOnDevice: toDevice.length,
        connectFailures: connects.filter((result) => result.error !== undefined).length,
        listPolls,
        listPollIntervalMs: LIST_POLL_INTERVAL_MS,
        claimToStreamMs: stream99,
        claimToListMs: list99,
        claimToDeviceConfirmMs: summarize(toDevice),
        handshakeMs: summarize(handshakeMs),
        relayFloorMs: relaySummary,
        mainThread,
        runnerLoopDelayMs: { p99: runnerDelay.percentile(99) / 1e6, max: runnerDelay.max / 1e6 },
        samples: {
          claimToStreamMs: toStream.map((value) => round(value, 2)),
          claimToListMs: toList.map((value) => round(value, 2)),
        },
      },
    };
  } finally {
    polling = false;
    await owner.exit();
    await fleet.exit();
    await cloud.process.exit();
  }
}
