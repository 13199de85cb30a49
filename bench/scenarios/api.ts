// Scenario 4, api: requests per second of two routes apps call most, with autocannon, against a bare
// Fastify route that answers the same bytes, served the same way in the same run. The ratio is the share
// of the framework's own throughput that Roost keeps after authentication, rate limiting and the database.
import autocannon from "autocannon";

import { createClaimCode, createUser, listDevices } from "../lib/api.js";
import type { ScenarioContext } from "../lib/context.js";
import { launchBare, launchCloud, profiled } from "../lib/context.js";
import { deviceIds, deviceKeys } from "../lib/keys.js";
import type { ReportRow, ScenarioResult } from "../lib/report.js";
import { round } from "../lib/stats.js";

/** Roost / bare for both routes (issue 11: at least half of bare Fastify). */
const TARGET_RATIO = 0.5;

/** Devices of the user whose list is read, per the issue. */
const LISTED_DEVICES = 1000;

/** Connections autocannon keeps open (one request in flight on each). */
const CONNECTIONS = 10;

/** What one autocannon run measured. */
interface LoadResult {
  readonly requestsPerSecond: number;
  readonly latencyP50Ms: number;
  readonly latencyP99Ms: number;
  readonly requests: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly throughputBytesPerSecond: number;
}

/** One autocannon run against `url`. */
async function load(options: {
  url: string;
  method: "GET" | "POST";
  token: string;
  seconds: number;
}): Promise<LoadResult> {
  const result = await autocannon({
    url: options.url,
    method: options.method,
    connections: CONNECTIONS,
    duration: options.seconds,
    headers: {
      authorization: `Bearer ${options.token}`,
      ...(options.method === "POST" ? { "content-type": "application/json" } : {}),
    },
    // What particle-api-js sends when it creates a claim code. @see spec/cloud-api.md §3.1
    body: options.method === "POST" ? "{}" : undefined,
  });
  return {
    requestsPerSecond: result.requests.average,
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
    requests: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors,
    throughputBytesPerSecond: result.throughput.average,
  };
}

/** Runs the API scenario. */
export async function runApi(context: ScenarioContext): Promise<ScenarioResult> {
  const seconds = context.quick ? 2 : 10;
  const warmupSeconds = context.quick ? 1 : 3;
  const cloud = await launchCloud(context, { scenario: "api" });
  const bare = launchBare(context);
  // On SQLite, the claim-code route's floor: bare Fastify plus the one thing Roost cannot skip, storing the
  // code (bare-server.ts, insertClaimCode) before answering.
  const floor = context.databaseUrl === undefined ? launchBare(context) : undefined;
  try {
    const { url } = cloud.address;
    // Claim codes for a person setting up a device; the list for a user with 1,000 devices.
    const claimer = await createUser(url);
    const owner = await createUser(url);
    const [key] = await deviceKeys(1);
    await cloud.process.call("insertDevices", {
      keys: [key?.publicKeyPem ?? ""],
      devices: deviceIds(LISTED_DEVICES).map((id) => ({ id, key: 0 })),
      ownerToken: owner,
    });
    const claimBody = await createClaimCode(url, claimer);
    const listBody = await listDevices(url, owner);
    if (listBody.length !== LISTED_DEVICES) throw new Error(`listed ${listBody.length} devices`);
    const bareAddress = await bare.call("start", {
      routes: [
        { method: "POST", url: "/v1/device_claims", body: claimBody },
        { method: "GET", url: "/v1/devices", body: listBody },
      ],
    });

    const floorAddress = await floor?.call("start", {
      routes: [{ method: "POST", url: "/v1/device_claims", body: claimBody, insertClaimCode: true }],
    });

    const routes = [
      { name: "POST /v1/device_claims", method: "POST" as const, path: "/v1/device_claims", token: claimer },
      { name: "GET /v1/devices (1,000)", method: "GET" as const, path: "/v1/devices", token: owner },
    ];
    const measured: Record<
      string,
      {
        roost: LoadResult;
        bare: LoadResult;
        roostCpuMicrosPerRequest: number;
        bareCpuMicrosPerRequest: number;
        floor?: LoadResult;
        floorCpuMicrosPerRequest?: number;
      }
    > = {};
    const profiles: (string | undefined)[] = [];
    for (const route of routes) {
      const target = (base: string) => ({
        url: `${base}${route.path}`,
        method: route.method,
        token: route.token,
      });
      context.log(`${route.name}: ${warmupSeconds} s warm-up, then ${seconds} s each against Roost and bare`);
      await load({ ...target(url), seconds: warmupSeconds });
      await load({ ...target(bareAddress.url), seconds: warmupSeconds });
      // Only Roost's own window is profiled.
      const roostCpuBefore = (await cloud.process.call("stats", {})).cpuMicros;
      const { result: roost, profile } = await profiled(context, {
        cloud,
        name: `api-${route.method.toLowerCase()}-${route.path.split("/").at(-1)}`,
        measure: () => load({ ...target(url), seconds }),
      });
      const roostCpu = (await cloud.process.call("stats", {})).cpuMicros - roostCpuBefore;
      profiles.push(profile);
      const bareCpuBefore = (await bare.call("cpu", {})).cpuMicros;
      const bareResult = await load({ ...target(bareAddress.url), seconds });
      const bareCpu = (await bare.call("cpu", {})).cpuMicros - bareCpuBefore;
      measured[route.name] = {
        roost,
        bare: bareResult,
        roostCpuMicrosPerRequest: roostCpu / Math.max(1, roost.requests),
        bareCpuMicrosPerRequest: bareCpu / Math.max(1, bareResult.requests),
      };
      if (floor && floorAddress && route.method === "POST") {
        await load({ ...target(floorAddress.url), seconds: warmupSeconds });
        const floorCpuBefore = (await floor.call("cpu", {})).cpuMicros;
        const floorResult = await load({ ...target(floorAddress.url), seconds });
        const floorCpu = (await floor.call("cpu", {})).cpuMicros - floorCpuBefore;
        measured[route.name] = {
          ...measured[route.name],
          floor: floorResult,
          floorCpuMicrosPerRequest: floorCpu / Math.max(1, floorResult.requests),
        } as (typeof measured)[string];
      }
    }

    const rows: ReportRow[] = routes.flatMap((route): ReportRow[] => {
      const result = measured[route.name];
      const roost = result?.roost.requestsPerSecond ?? Number.NaN;
      const bareRate = result?.bare.requestsPerSecond ?? Number.NaN;
      const roostCpu = result?.roostCpuMicrosPerRequest ?? Number.NaN;
      const bareCpu = result?.bareCpuMicrosPerRequest ?? Number.NaN;
      // Reported beside the target, not as it: what bare Fastify keeps once it stores the claim code too.
      const floorRows: ReportRow[] =
        result?.floor === undefined
          ? []
          : [
              {
                scenario: "api",
                figure: `${route.name} req/s against bare Fastify + the SQLite insert`,
                value: `${round(roost)} /s`,
                limit: `${round(result.floor.requestsPerSecond)} /s (bare + insert)`,
                ratio: roost / result.floor.requestsPerSecond,
              },
              {
                scenario: "api",
                figure: `${route.name} server CPU per request against bare + insert`,
                value: `${round(roostCpu)} µs`,
                limit: `${round(result.floorCpuMicrosPerRequest ?? Number.NaN)} µs (bare + insert)`,
                ratio: (result.floorCpuMicrosPerRequest ?? Number.NaN) / roostCpu,
              },
            ];
      return [
        {
          scenario: "api",
          figure: `${route.name} req/s (p99 ${round(result?.roost.latencyP99Ms ?? Number.NaN)} ms)`,
          value: `${round(roost)} /s`,
          limit: `${round(bareRate)} /s (bare Fastify)`,
          ratio: roost / bareRate,
          target: { better: "higher", ratio: TARGET_RATIO },
        },
        // Wall-clock rates follow the machine's load; the CPU each request costs the server does much less.
        {
          scenario: "api",
          figure: `${route.name} server CPU per request`,
          value: `${round(roostCpu)} µs`,
          limit: `${round(bareCpu)} µs (bare Fastify)`,
          ratio: bareCpu / roostCpu,
        },
        ...floorRows,
      ];
    });
    return {
      name: "api",
      profiles,
      rows,
      raw: {
        connections: CONNECTIONS,
        seconds,
        listedDevices: LISTED_DEVICES,
        claimResponseBytes: JSON.stringify(claimBody).length,
        listResponseBytes: JSON.stringify(listBody).length,
        routes: measured,
      },
    };
  } finally {
    await bare.exit();
    await floor?.exit();
    await cloud.process.exit();
  }
}
