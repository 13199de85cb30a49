// Roost's benchmarks: `npm run bench [-- <scenario…>] [--quick] [--profile]`. Each figure is measured side
// by side with its limit in the same run and reported as a ratio; nothing is asserted (see bench/README.md).
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

import { buildCloud } from "./lib/build.js";
import type { ScenarioContext } from "./lib/context.js";
import { formatProfile, summarizeProfile } from "./lib/cpu-profile.js";
import type { BenchDatabase } from "./lib/databases.js";
import { DEFAULT_POSTGRES_SERVER, postgresOn, postgresRow, reachable, SQLITE } from "./lib/databases.js";
import { machineInfo } from "./lib/machine.js";
import type { ScenarioResult } from "./lib/report.js";
import { fileStamp, formatTable, verdict, writeResults } from "./lib/report.js";
import { runApi } from "./scenarios/api.js";
import { runClaim } from "./scenarios/claim.js";
import { runConnections } from "./scenarios/connections.js";
import { runConsole } from "./scenarios/console.js";
import { runFanout } from "./scenarios/fanout.js";
import { runGen3Handshake } from "./scenarios/gen3-handshake.js";
import { runHandshake } from "./scenarios/handshake.js";
import { runWebhooks } from "./scenarios/webhooks.js";

const SCENARIOS = {
  handshake: runHandshake,
  claim: runClaim,
  connections: runConnections,
  api: runApi,
  fanout: runFanout,
  "gen3-handshake": runGen3Handshake,
  console: runConsole,
  webhooks: runWebhooks,
} as const satisfies Record<string, (context: ScenarioContext) => Promise<ScenarioResult>>;

type ScenarioName = keyof typeof SCENARIOS;

/** Scenarios that start no cloud: they run once, not once per database. */
const WITHOUT_DATABASE: ReadonlySet<ScenarioName> = new Set(["console"]);

const HELP = `Usage: npm run bench -- [scenario...] [options]

Scenarios (all when none is named): ${Object.keys(SCENARIOS).join(", ")}

Options:
  --quick              small scale and short windows (under two minutes in all; what CI runs)
  --profile            profile the server process during each measured window (V8's sampling profiler,
                       as node --cpu-prof) into bench/results/profiles/ and print where its time went
  --devices <n>        largest device count of the connections scenario (default: the open-file limit less 1000; quick 500)
  --database <which>   sqlite, postgres or both (default both: every scenario on each, side by side)
  --postgres-url <url> PostgreSQL server where each scenario gets a scratch database (default
                       ${DEFAULT_POSTGRES_SERVER}); when it does not answer, only SQLite runs
  --source             run the servers from TypeScript sources through tsx instead of their build (tsx's
                       keepNames costs ~256 bytes per named closure: memory figures come out higher)
  --help               this text

Examples:
  npm run bench
  npm run bench -- handshake
  npm run bench -- --quick
  npm run bench -- claim --profile
`;

function isScenario(name: string): name is ScenarioName {
  return Object.hasOwn(SCENARIOS, name);
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      quick: { type: "boolean", default: false },
      profile: { type: "boolean", default: false },
      devices: { type: "string" },
      database: { type: "string", default: "both" },
      "postgres-url": { type: "string", default: DEFAULT_POSTGRES_SERVER },
      source: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const unknown = positionals.filter((name) => !isScenario(name));
  if (unknown.length > 0) {
    process.stderr.write(`unknown scenario: ${unknown.join(", ")}\n\n${HELP}`);
    return 2;
  }
  const maxDevices = values.devices === undefined ? undefined : Number(values.devices);
  if (maxDevices !== undefined && !(Number.isInteger(maxDevices) && maxDevices > 0)) {
    process.stderr.write("--devices must be a positive integer\n");
    return 2;
  }
  if (!["sqlite", "postgres", "both"].includes(values.database)) {
    process.stderr.write("--database must be sqlite, postgres or both\n");
    return 2;
  }
  const databases: BenchDatabase[] = [];
  if (values.database !== "postgres") databases.push(SQLITE);
  if (values.database !== "sqlite") {
    const unreachable = await reachable(values["postgres-url"]);
    if (unreachable === undefined) databases.push(postgresOn(values["postgres-url"]));
    else
      process.stderr.write(
        `PostgreSQL at ${values["postgres-url"]} does not answer (${unreachable}): skipped\n`,
      );
  }
  if (databases.length === 0) return 2;
  const selected =
    positionals.length > 0 ? positionals.filter(isScenario) : (Object.keys(SCENARIOS) as ScenarioName[]);
  const started = new Date();
  const stamp = fileStamp(started);
  const resultsDir = join(import.meta.dirname, "results");
  const profileDir = values.profile ? join(resultsDir, "profiles", stamp) : undefined;
  let serverPackages: "built" | "source" = "source";
  if (!values.source) {
    process.stderr.write("building packages/cloud (tsc -b) so that the server runs its shipped JavaScript\n");
    const built = await buildCloud();
    if (built.ok) serverPackages = "built";
    else process.stderr.write(`build failed; running the servers from sources instead:\n${built.error}\n`);
  }
  const context: ScenarioContext = {
    quick: values.quick,
    machine: machineInfo(),
    resultsDir,
    stamp,
    databaseUrl: undefined,
    profileDir,
    maxDevices,
    serverPackages,
    log: (line) => process.stderr.write(`  ${line}\n`),
  };
  const { machine } = context;
  const loadAtStart = loadavg()[0] ?? 0;
  process.stderr.write(
    `Roost bench (${values.quick ? "quick" : "full"}): ${machine.cpuModel}, ${machine.cores} cores, ` +
      `${machine.memoryGiB} GiB, Node ${machine.node}, open files ${machine.openFilesLimit}, ` +
      `server from ${serverPackages === "built" ? "its build" : "sources"}\n`,
  );
  // Other work on the machine takes cores from the processes being measured: say so next to the figures.
  if (loadAtStart > machine.cores / 2)
    process.stderr.write(
      `warning: load average ${loadAtStart.toFixed(2)} on ${machine.cores} cores; figures will be noisy\n`,
    );

  const results: ScenarioResult[] = [];
  let failed = false;
  for (const name of selected) {
    for (const database of WITHOUT_DATABASE.has(name) ? databases.slice(0, 1) : databases) {
      const scenarioStarted = performance.now();
      process.stderr.write(`> ${name} on ${database.kind}\n`);
      const scratch = await database.create();
      try {
        const result = await SCENARIOS[name]({
          ...context,
          databaseUrl: scratch.url,
          // Charts and profiles of the PostgreSQL run get names of their own.
          stamp: database.kind === "sqlite" ? stamp : `${stamp}-pg`,
          profileDir: profileDir && join(profileDir, database.kind),
        });
        results.push(
          database.kind === "sqlite"
            ? result
            : { ...result, name: `${result.name} (pg)`, rows: result.rows.map(postgresRow) },
        );
        for (const profile of result.profiles ?? [])
          if (profile) process.stderr.write(`${formatProfile(summarizeProfile(profile))}\n`);
      } catch (error) {
        failed = true;
        process.stderr.write(
          `  ${name} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
        );
      } finally {
        await scratch.drop();
      }
      process.stderr.write(`  (${((performance.now() - scenarioStarted) / 1000).toFixed(1)} s)\n`);
    }
  }

  const rows = results.flatMap((result) => result.rows);
  const durationMs = Date.now() - started.getTime();
  process.stdout.write(`\n${formatTable(rows)}\n\n`);
  const file = writeResults({
    dir: resultsDir,
    stamp,
    results: {
      date: started.toISOString(),
      mode: values.quick ? "quick" : "full",
      durationMs,
      machine,
      serverPackages,
      loadAverage: { start: loadAtStart, end: loadavg()[0] ?? 0 },
      rows: rows.map((row) => ({ ...row, verdict: verdict(row) })),
      scenarios: Object.fromEntries(results.map((result) => [result.name, result.raw])),
    },
  });
  const files = [file, ...results.flatMap((result) => result.files ?? [])];
  process.stdout.write(`${files.map((path) => `wrote ${path}`).join("\n")}\n`);
  process.stdout.write(`done in ${(durationMs / 1000).toFixed(1)} s\n`);
  return failed ? 1 : 0;
}

process.exitCode = await main();
