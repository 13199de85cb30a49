import { join } from "node:path";

import type { BareServerApi } from "../processes/bare-server.js";
import type {
  CloudServerAddress,
  CloudServerApi,
  CloudServerStartParams,
} from "../processes/cloud-server.js";
import type { DeviceConnectResult, DeviceFleetApi } from "../processes/device-fleet.js";
import type { ChildHandle } from "./child.js";
import { startChild } from "./child.js";
import type { BenchKey } from "./keys.js";
import type { MachineInfo } from "./machine.js";

/** What every scenario gets from the runner. */
export interface ScenarioContext {
  /** Small scale and short windows (CI). */
  readonly quick: boolean;
  readonly machine: MachineInfo;
  /** Folder for charts and results. */
  readonly resultsDir: string;
  /** The run's date stamp, for file names. */
  readonly stamp: string;
  /** PostgreSQL URL to run the cloud on instead of SQLite. */
  readonly databaseUrl: string | undefined;
  /** Profile the server process during each scenario's measured window into `<profileDir>/<scenario>.cpuprofile`. */
  readonly profileDir: string | undefined;
  /** Override of the largest device count of the connections scenario. */
  readonly maxDevices: number | undefined;
  /** Where the servers under test load Roost from: its build (as shipped) or its TypeScript sources. */
  readonly serverPackages: "built" | "source";
  /** Progress output. */
  log(line: string): void;
}

/** A cloud node under test in its own process. */
export interface CloudUnderTest {
  readonly process: ChildHandle<CloudServerApi>;
  readonly address: CloudServerAddress;
}

/**
 * Node and V8 flags for the server under test, from `ROOST_BENCH_SERVER_FLAGS` (space-separated), to look
 * inside it during a run (`--trace-gc`, `--perf-basic-prof`); `NODE_OPTIONS` refuses some of them and would
 * reach every process of the run.
 */
function serverNodeFlags(): string[] {
  return (process.env.ROOST_BENCH_SERVER_FLAGS ?? "").split(" ").filter((flag) => flag.length > 0);
}

/** Starts the cloud under test (profiled when the run asks for it). */
export async function launchCloud(
  context: ScenarioContext,
  options: { scenario: string; params?: Omit<CloudServerStartParams, "databaseUrl"> },
): Promise<CloudUnderTest> {
  const child = startChild<CloudServerApi>({
    entry: new URL("../processes/cloud-server.ts", import.meta.url),
    name: "cloud server",
    packages: context.serverPackages,
    nodeFlags: serverNodeFlags(),
  });
  const address = await child.call("start", { ...options.params, databaseUrl: context.databaseUrl });
  return { process: child, address };
}

/**
 * Runs `measure` with the cloud's CPU profiled when the run asks for it (`--profile`): the same V8 sampling
 * profiler as `node --cpu-prof`, started and stopped over the inspector so that the profile covers only the
 * measured window, not start-up, set-up or the crypto ceiling loop. Returns the profile's path, if any.
 */
export async function profiled<T>(
  context: ScenarioContext,
  options: { cloud: CloudUnderTest; name: string; measure: () => Promise<T> },
): Promise<{ result: T; profile: string | undefined }> {
  if (!context.profileDir) return { result: await options.measure(), profile: undefined };
  await options.cloud.process.call("profileStart", {});
  try {
    return {
      result: await options.measure(),
      profile: join(context.profileDir, `${options.name}.cpuprofile`),
    };
  } finally {
    await options.cloud.process.call("profileStop", {
      file: join(context.profileDir, `${options.name}.cpuprofile`),
    });
  }
}

/**
 * Starts `count` device processes. `niceness` (Linux): they run at that lower priority, standing in for
 * devices on other machines that do not share the server's cores (see bench/README.md, "How it measures").
 */
export function launchFleets(
  count: number,
  options: { niceness?: number } = {},
): ChildHandle<DeviceFleetApi>[] {
  return Array.from({ length: count }, (_, index) =>
    startChild<DeviceFleetApi>({
      entry: new URL("../processes/device-fleet.ts", import.meta.url),
      name: `device fleet ${index + 1}`,
      ...(options.niceness ? { niceness: options.niceness } : {}),
    }),
  );
}

/** Starts the bare Fastify server of the API scenario. */
export function launchBare(context: ScenarioContext): ChildHandle<BareServerApi> {
  return startChild<BareServerApi>({
    entry: new URL("../processes/bare-server.ts", import.meta.url),
    name: "bare server",
    packages: context.serverPackages,
  });
}

/** Connects `devices` to the cloud's gateway, split evenly over the device processes; every device's result. */
export async function connectDevices(options: {
  cloud: CloudUnderTest;
  fleets: readonly ChildHandle<DeviceFleetApi>[];
  keys: readonly BenchKey[];
  devices: readonly { id: string; key: number; claimCode?: string }[];
  /** Handshakes in flight at once in each device process. */
  concurrency: number;
  pingIntervalMs: number;
  /** Local addresses each device process connects from, in turn (loopback aliases); the system's choice by default. */
  localAddresses?: (fleetIndex: number) => readonly string[];
}): Promise<DeviceConnectResult[]> {
  const { cloud, fleets } = options;
  const slices = split(options.devices, fleets.length);
  const lists = await Promise.all(
    fleets.map((fleet, index) =>
      fleet.call("connect", {
        host: "127.0.0.1",
        port: cloud.address.gatewayPort,
        serverPublicKeyPem: cloud.address.serverPublicKeyPem,
        keys: options.keys.map((key) => key.privateKeyPem),
        devices: slices[index] ?? [],
        concurrency: options.concurrency,
        pingIntervalMs: options.pingIntervalMs,
        ...(options.localAddresses ? { localAddresses: options.localAddresses(index) } : {}),
      }),
    ),
  );
  return lists.flat();
}

/** Splits `items` into `parts` nearly equal slices, in order. */
export function split<T>(items: readonly T[], parts: number): T[][] {
  const size = Math.ceil(items.length / Math.max(1, parts));
  return Array.from({ length: Math.max(1, parts) }, (_, index) =>
    items.slice(index * size, (index + 1) * size),
  );
}

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
