// The limit of the API scenario: a bare Fastify route, served the same way as Roost's API (its own
// process, 127.0.0.1, no logging), that sends a fixed body of the same shape and size as Roost's answer.
// What Roost adds on top (authentication, rate limiting, body parsing, the database) is what the ratio shows.
import { createHash, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Sqlite from "better-sqlite3";
import Fastify from "fastify";
import type { FastifyInstance } from "fastify";

import { newClaimCode, newClaimCodeRowId } from "@roost/cloud";

import { serveChild } from "../lib/child.js";

/** One route and the body it always sends. */
export interface BareRoute {
  readonly method: "GET" | "POST";
  readonly url: string;
  readonly body: unknown;
  /**
   * Also store a claim code before answering, as Roost's floor: a fresh random code, its SHA-256, and the
   * row inserted into an SQLite file (WAL, synchronous NORMAL, Roost's table and indexes) in one statement
   * per event-loop turn, answered after its commit. No checkpoint runs during the measure (the log grows).
   */
  readonly insertClaimCode?: boolean;
}

/** The methods of this process. */
export type BareServerApi = {
  start(params: { routes: readonly BareRoute[] }): Promise<{ url: string }>;
  /** `process.cpuUsage()` of this process, user + system, in microseconds. */
  cpu(params: Record<string, never>): Promise<{ cpuMicros: number }>;
};

let app: FastifyInstance | undefined;
let sqlite: Sqlite.Database | undefined;
let dataDir: string | undefined;

/** Roost's claim_codes table and its index (packages/cloud/src/storage/migrations.ts, as of 0015a). */
const CLAIM_CODES_TABLE = `create table claim_codes (id text primary key, code_hash text not null,
  principal_kind text not null, user_id text, customer_id text, product_id integer, created_at bigint not null,
  expires_at bigint not null, used_at bigint, revoked_at bigint, device_id text, by_hash integer not null default 1);
  create unique index claim_codes_hash on claim_codes (code_hash) where by_hash = 1`;

/** A handler that stores a claim code per request, one insert statement per event-loop turn. */
function claimCodeInserter(body: unknown): () => Promise<unknown> {
  dataDir = mkdtempSync(join(tmpdir(), "roost-bare-"));
  const db = new Sqlite(join(dataDir, "bare.db"));
  sqlite = db;
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.pragma("wal_autocheckpoint = 0");
  db.exec(CLAIM_CODES_TABLE);
  const statements = new Map<number, Sqlite.Statement>();
  const userId = randomUUID();
  let queue: { row: unknown[]; done: () => void }[] = [];
  const flush = () => {
    const batch = queue;
    queue = [];
    let statement = statements.get(batch.length);
    if (!statement) {
      statement = db.prepare(
        `insert into claim_codes values ${Array(batch.length).fill("(?,?,?,?,?,?,?,?,?,?,?,?)").join(",")}`,
      );
      statements.set(batch.length, statement);
    }
    statement.run(batch.flatMap((waiting) => waiting.row));
    for (const waiting of batch) waiting.done();
  };
  return () => {
    // Roost's code and row: a time-ordered row ID that the code carries (security.ts), found by it, not by hash.
    const now = Date.now();
    const id = newClaimCodeRowId(now);
    const code = newClaimCode(id);
    const row: unknown[] = [id, createHash("sha256").update(code).digest("hex"), "user", userId];
    row.push(null, null, now, now + 3_600_000, null, null, null, 0);
    return new Promise<void>((resolve) => {
      if (queue.length === 0) setImmediate(flush);
      queue.push({ row, done: resolve });
    }).then(() => ({ ...(body as object), claim_code: code }));
  };
}

const api: BareServerApi = {
  async start(params) {
    app = Fastify({ logger: false });
    for (const route of params.routes)
      app.route({
        method: route.method,
        url: route.url,
        handler: route.insertClaimCode ? claimCodeInserter(route.body) : () => route.body,
      });
    const url = await app.listen({ port: 0, host: "127.0.0.1" });
    return { url };
  },
  cpu() {
    const usage = process.cpuUsage();
    return Promise.resolve({ cpuMicros: usage.user + usage.system });
  },
};

serveChild(api, async () => {
  await app?.close();
  sqlite?.close();
  if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
});
