// The databases a bench run measures on: SQLite (a file, as `roost serve` uses by default) and PostgreSQL (a
// scratch database per scenario on a server, dropped afterwards), so that both are reported side by side.
import { randomBytes } from "node:crypto";
import pg from "pg";

import type { ReportRow } from "./report.js";

/** Where the PostgreSQL runs create their scratch databases unless `--postgres-url` says otherwise. */
export const DEFAULT_POSTGRES_SERVER = "postgres://postgres@127.0.0.1:5432/postgres";

/** One database a scenario runs on. */
export interface BenchDatabase {
  /** `sqlite` or `postgres`, as rows and results name it. */
  readonly kind: "sqlite" | "postgres";
  /** Creates the database for one scenario; its URL (undefined for SQLite) and how to drop it. */
  create(): Promise<{ url: string | undefined; drop(): Promise<void> }>;
}

/** SQLite: the cloud process makes its own file in a temporary folder. */
export const SQLITE: BenchDatabase = {
  kind: "sqlite",
  create: () => Promise.resolve({ url: undefined, drop: () => Promise.resolve() }),
};

async function admin<T>(serverUrl: string, run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

/** PostgreSQL on `serverUrl`: a fresh `roost_bench_…` database per scenario. */
export function postgresOn(serverUrl: string): BenchDatabase {
  return {
    kind: "postgres",
    async create() {
      const name = `roost_bench_${randomBytes(5).toString("hex")}`;
      await admin(serverUrl, (client) => client.query(`CREATE DATABASE ${name}`));
      const url = new URL(serverUrl);
      url.pathname = `/${name}`;
      return {
        url: url.toString(),
        async drop() {
          await admin(serverUrl, (client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
        },
      };
    },
  };
}

/** Whether a PostgreSQL server answers at `serverUrl`; the reason when it does not. */
export async function reachable(serverUrl: string): Promise<string | undefined> {
  try {
    await admin(serverUrl, (client) => client.query("SELECT 1"));
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/**
 * A PostgreSQL row beside its SQLite twin: the scenario is suffixed, and the target is the SQLite target
 * relaxed by a factor 2 (issue 11: PostgreSQL within a factor 2 of SQLite).
 */
export function postgresRow(row: ReportRow): ReportRow {
  const { target } = row;
  return {
    ...row,
    scenario: `${row.scenario} (pg)`,
    target: target && {
      better: target.better,
      ratio: target.better === "higher" ? target.ratio / 2 : target.ratio * 2,
    },
  };
}
