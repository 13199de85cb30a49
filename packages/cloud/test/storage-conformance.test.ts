/**
 * The storage conformance suite (DESIGN.md "Storage and scale"): one set of service-level tests, defined
 * once over a backend factory and run against every SQL dialect Roost supports. SQLite (a real file in the
 * OS temp folder) always runs; PostgreSQL runs when ROOST_TEST_POSTGRES_URL names a server, and there the
 * races are real (a pool of connections, READ COMMITTED).
 */
import { createHash, createPublicKey, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Sqlite from "better-sqlite3";
import { Kysely, Migrator, PostgresDialect, sql, SqliteDialect } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createCloudConfig } from "../src/config.js";
import { claimCodeRowId } from "../src/security.js";
import type { ClaimReason } from "../src/services/claims.js";
import type { DeviceRow, ProductDeviceQuery } from "../src/services/devices.js";
import type { Services } from "../src/services/index.js";
import { createServices } from "../src/services/index.js";
import type { Owner, Principal } from "../src/services/principal.js";
import type { Product } from "../src/services/products.js";
import type { Storage, StorageOptions } from "../src/storage/database.js";
import { openStorage } from "../src/storage/database.js";
import { createMigrationProvider } from "../src/storage/migrations.js";
import type { CustomersTable, UsersTable } from "../src/storage/schema.js";
import { createTemporaryDatabase, newDeviceId, newDeviceKey, POSTGRES_URL } from "./helpers.js";

/** An empty database that a backend made for one suite run, and how to throw it away. */
interface BackendDatabase {
  readonly options: StorageOptions;
  dispose(): Promise<void>;
}

/** What the suite needs of a backend: a way to make empty databases, and what it can do. */
interface BackendFactory {
  readonly name: string;
  /** True when several nodes (connections) may use one database at once, so races and concurrent start-ups are real. */
  readonly multiNode: boolean;
  create(): Promise<BackendDatabase>;
}

const sqliteFileBackend: BackendFactory = {
  name: "SQLite (file)",
  // One better-sqlite3 connection per process: SQLite is the single-node embedded default.
  multiNode: false,
  async create() {
    const folder = await mkdtemp(join(tmpdir(), "roost-conformance-"));
    return {
      options: { sqliteFile: join(folder, "roost.sqlite") },
      dispose: () => rm(folder, { recursive: true, force: true }),
    };
  },
};

function postgresBackend(serverUrl: string): BackendFactory {
  return {
    name: "PostgreSQL",
    multiNode: true,
    async create() {
      const database = await createTemporaryDatabase(serverUrl);
      return {
        options: { databaseUrl: database.url },
        dispose: async () => {
          await database[Symbol.asyncDispose]();
        },
      };
    },
  };
}

/** A clock the tests move by hand. It starts in 2031, far above 2^32 ms, so a timestamp cut to 32 bits would show. */
class FakeClock {
  now = Date.UTC(2031, 0, 1);
  readonly read = (): number => this.now;
  advance(ms: number): void {
    this.now += ms;
  }
}

const PASSWORD = "correct horse battery";
const PHOTON = 6;
const ELECTRON = 10;
const LOCKOUT_FAILURES = 3;
const LOCKOUT_MS = 60_000;
const CLAIM_CODE_TTL_SECONDS = 600;
const RACERS = 8;

// RSA key generation is slow; a few keys serve every device of the suite.
const KEYS = [newDeviceKey(), newDeviceKey()] as const;

function sha256(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

function unique(prefix: string): string {
  return `${prefix}-${newDeviceId().slice(0, 10)}`;
}

/** The same public key as a PKCS#1 PEM with CRLF line ends and stray whitespace: one of many forms clients send. */
function pkcs1WithCrlf(spkiPem: string): string {
  const pkcs1 = createPublicKey(spkiPem).export({ type: "pkcs1", format: "pem" }).toString();
  return `  \r\n${pkcs1.replaceAll("\n", "\r\n")}\r\n  `;
}

/** A legacy claim code (before migration 0015a): 63 characters of random base64, found by its hash. */
function legacyClaimCode(): string {
  return randomBytes(48).toString("base64").slice(0, 63);
}

/** The database of `options` opened without migrating it: its migrations are the test's to run. */
function openUnmigrated(options: StorageOptions): Kysely<unknown> {
  const dialect =
    options.databaseUrl === undefined
      ? new SqliteDialect({ database: new Sqlite(options.sqliteFile ?? ":memory:") })
      : new PostgresDialect({ pool: new pg.Pool({ connectionString: options.databaseUrl, max: 1 }) });
  return new Kysely<unknown>({ dialect });
}

/** Runs the whole conformance suite against one backend. */
function defineStorageConformance(backend: BackendFactory): void {
  describe(`storage conformance on ${backend.name}`, () => {
    const clock = new FakeClock();
    const config = createCloudConfig({
      clock: clock.read,
      passwordHashCost: 1024,
      claimCodeTtlSeconds: CLAIM_CODE_TTL_SECONDS,
      logLevel: "silent",
      rateLimits: { lockoutFailures: LOCKOUT_FAILURES, lockoutMs: LOCKOUT_MS },
    });
    let database: BackendDatabase;
    let storage: Storage;
    let services: Services;

    /** A user's two hooks on claim events (`roost/`) and on `spark/status`, with no device filter. */
    const claimHooks = (userId: string) =>
      Promise.all(
        ["roost/", "spark/status"].map((event) =>
          services.webhooks.create({
            owner: { kind: "user", userId },
            fields: { event, url: "https://example.com/claims" },
            resolveDevice: () => Promise.reject(new Error("no device filter")),
          }),
        ),
      );

    /** The webhook deliveries queued for these hooks, in queue order. */
    const deliveriesOf = (hookIds: string[]) =>
      storage.db
        .selectFrom("webhook_deliveries")
        .select(["hook_id", "event_name"])
        .where("hook_id", "in", hookIds)
        .orderBy("seq")
        .execute();

    beforeAll(async () => {
      database = await backend.create();
      storage = await openStorage(database.options);
      services = createServices({ db: storage.db, config });
    });

    afterAll(async () => {
      await storage?.close();
      await database?.dispose();
    });

    /** Opens a fresh database of this backend for one test and disposes of it afterwards. */
    async function withFreshDatabase(use: (database: BackendDatabase) => Promise<void>): Promise<void> {
      const fresh = await backend.create();
      try {
        await use(fresh);
      } finally {
        await fresh.dispose();
      }
    }

    // ---- fixtures -------------------------------------------------------------------------------------

    /** A new user (on the suite's services, or on `on`: services over another database). */
    async function newUser(
      on: Services = services,
    ): Promise<{ user: UsersTable; principal: Principal; owner: Owner }> {
      const user = await on.accounts.createUser({
        username: `${unique("user")}@example.com`,
        password: PASSWORD,
      });
      const principal: Principal = {
        kind: "user",
        userId: user.id,
        username: user.username,
        token: { hash: "test", clientId: "particle", expiresAt: null },
      };
      return { user, principal, owner: { kind: "user", userId: user.id } };
    }

    function newProduct(userId: string, platformId = PHOTON, name = unique("Product")): Promise<Product> {
      return services.products.create({ userId, name, platformId });
    }

    async function newCustomer(
      product: Product,
      password?: string,
    ): Promise<{ customer: CustomersTable; owner: Owner }> {
      const customer = await services.accounts.createCustomer({
        productId: product.id,
        email: `${unique("customer")}@example.com`,
        password,
      });
      return { customer, owner: { kind: "customer", customerId: customer.id, productId: product.id } };
    }

    function registerDevice(
      principal: Principal,
      options: { deviceId?: string; productId?: number | null; platformId?: number; publicKey?: string } = {},
      on: Services = services,
    ): Promise<DeviceRow> {
      return on.devices.register({
        principal,
        deviceId: options.deviceId ?? newDeviceId(),
        publicKey: options.publicKey ?? KEYS[0].publicKeyPem,
        allowNew: true,
        platformKnown: options.platformId !== undefined,
        algorithm: "rsa",
        productId: options.productId ?? null,
        platformId: options.platformId ?? PHOTON,
        mayAdministerProduct: (productId) => on.products.canAdminister(principal, productId),
      });
    }

    async function deviceRow(deviceId: string) {
      return storage.db
        .selectFrom("devices")
        .selectAll()
        .where("id", "=", deviceId)
        .executeTakeFirstOrThrow();
    }

    async function codeRow(claimId: string) {
      return storage.db
        .selectFrom("claim_codes")
        .selectAll()
        .where("id", "=", claimId)
        .executeTakeFirstOrThrow();
    }

    async function knownMigrations(): Promise<string[]> {
      return Object.keys(await createMigrationProvider(storage.dialect).getMigrations()).sort();
    }

    async function appliedMigrations(node: Storage): Promise<string[]> {
      const applied = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(
        node.db,
      );
      return applied.rows.map((row) => row.name);
    }

    async function dumpTables(): Promise<Record<string, unknown[]>> {
      const dump: Record<string, unknown[]> = {};
      // Every table the migrations made, including ones added after this suite was written.
      for (const { name } of await storage.db.introspection.getTables()) {
        dump[name] = (
          await sql<Record<string, unknown>>`select * from ${sql.table(name)}`.execute(storage.db)
        ).rows;
      }
      return dump;
    }

    async function claimState() {
      const [devices, codes, attempts] = await Promise.all([
        storage.db.selectFrom("devices").selectAll().orderBy("id").execute(),
        storage.db.selectFrom("claim_codes").selectAll().orderBy("id").execute(),
        storage.db.selectFrom("claim_attempts").selectAll().execute(),
      ]);
      return { devices, codes, attempts };
    }

    /** Presents a code and checks that it was refused for `reason`, with only the attempt recorded. */
    async function expectRefusedChangingNothing(
      presentation: { deviceId: string; code: string },
      reason: ClaimReason,
      claimId: string | null,
    ): Promise<void> {
      const before = await claimState();
      clock.advance(1);
      const result = await services.claims.claimByCode(presentation);
      // A recognised code names its owner (who is told of the attempt); an unknown one names nobody.
      expect(result).toEqual({
        ok: false,
        reason,
        claimId,
        owner: null,
        codeOwner:
          claimId === null
            ? null
            : expect.objectContaining({ kind: expect.stringMatching(/^(user|customer)$/) }),
        // The code's owner hears of the attempt; nobody hears of a code nobody issued.
        events:
          claimId === null
            ? []
            : [
                expect.objectContaining({
                  name: "roost/claim/attempt",
                  coreid: presentation.deviceId.toLowerCase(),
                }),
              ],
      });
      const after = await claimState();
      expect(after.devices).toEqual(before.devices);
      expect(after.codes).toEqual(before.codes);
      const known = new Set(before.attempts.map((attempt) => attempt.id));
      expect(after.attempts.filter((attempt) => !known.has(attempt.id))).toEqual([
        expect.objectContaining({
          claim_code_id: claimId,
          device_id: presentation.deviceId,
          outcome: "refused",
          reason,
          source: "gateway",
          at: clock.now,
        }),
      ]);
    }

    // ---- migrations -----------------------------------------------------------------------------------

    describe("migrations", () => {
      it("opens an already migrated database again without re-running a migration or losing data", async () => {
        const { user } = await newUser();
        const again = await openStorage(database.options);
        try {
          const seen = await again.db
            .selectFrom("users")
            .select("username")
            .where("id", "=", user.id)
            .executeTakeFirst();
          expect(seen?.username).toBe(user.username);
          expect(await appliedMigrations(again)).toEqual(await knownMigrations());
          const rerun = await new Migrator({
            db: again.db,
            provider: createMigrationProvider(again.dialect),
          }).migrateToLatest();
          expect(rerun).toEqual({ results: [] });
        } finally {
          await again.close();
        }
        // The first connection still works after the second one came and went.
        expect(await services.accounts.getUser(user.id)).toMatchObject({ id: user.id });
      });

      it("keeps the claim codes of a database made before 0015a claimable, found by their hash", async () => {
        await withFreshDatabase(async (fresh) => {
          // The database as the release before 0015a left it, with two pending codes of random base64. Every
          // such code reads as carrying some row ID (security.ts, claimCodeRowId): the second one's names the
          // first one's row, so its claim finds a row by that ID whose hash is not its own.
          const old = openUnmigrated(fresh.options);
          const codes = [legacyClaimCode(), legacyClaimCode()];
          const ids = [claimCodeRowId(codes[1] ?? ""), randomUUID()];
          expect(ids[0]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/);
          try {
            const migrated = await new Migrator({
              db: old,
              provider: createMigrationProvider(storage.dialect),
            }).migrateTo("0014a_presence_index");
            expect(migrated.error).toBeUndefined();
            for (const [at, code] of codes.entries())
              await sql`insert into claim_codes (id, code_hash, principal_kind, user_id, created_at, expires_at)
                values (${ids[at]}, ${sha256(code)}, 'user', 'someone', ${clock.now},
                  ${clock.now + CLAIM_CODE_TTL_SECONDS * 1000})`.execute(old);
          } finally {
            await old.destroy();
          }

          const upgraded = await openStorage(fresh.options);
          try {
            expect(await appliedMigrations(upgraded)).toEqual(await knownMigrations());
            const onUpgraded = createServices({ db: upgraded.db, config });
            const { user, principal } = await newUser(onUpgraded);
            await upgraded.db.updateTable("claim_codes").set({ user_id: user.id }).execute();
            const rows = await upgraded.db.selectFrom("claim_codes").select(["id", "by_hash"]).execute();
            expect(rows.map((row) => row.by_hash)).toEqual([1, 1]);
            for (const code of codes) {
              const device = await registerDevice(principal, {}, onUpgraded);
              expect(await onUpgraded.claims.claimByCode({ deviceId: device.id, code })).toMatchObject({
                ok: true,
                reason: "claimed",
                owner: { kind: "user", userId: user.id },
              });
            }
          } finally {
            await upgraded.close();
          }
        });
      });

      it("indexes claim codes only where a lookup needs it: hashes of codes found by them, pending codes by customer", async () => {
        if (storage.dialect === "sqlite") {
          const indexes = await sql<{ name: string; unique: number; partial: number }>`select name,
            "unique", partial from pragma_index_list('claim_codes') order by name`.execute(storage.db);
          expect(indexes.rows).toEqual([
            { name: "claim_codes_hash", unique: 1, partial: 1 },
            { name: "claim_codes_pending_customer", unique: 0, partial: 1 },
            { name: "sqlite_autoindex_claim_codes_1", unique: 1, partial: 0 },
          ]);
          // Both ways a claim finds its code read one index entry, never the table's rows one by one.
          for (const lookup of [
            sql`explain query plan select id from claim_codes where id = ${"x"} and code_hash = ${"h"}`,
            sql`explain query plan select id from claim_codes where code_hash = ${"h"} and by_hash = 1`,
          ]) {
            const plan = await lookup.execute(storage.db);
            const steps = plan.rows.map((row) => (row as { detail: string }).detail);
            expect(steps.join("; ")).toMatch(
              /^SEARCH claim_codes USING INDEX (sqlite_autoindex_claim_codes_1|claim_codes_hash) \((id|code_hash)=\?\)$/,
            );
          }
          // Deleting a customer revokes its pending codes (AccountService.deleteCustomer): an index search
          // since 0017a, not a scan of every code of the deployment.
          const plan = await sql<{ detail: string }>`explain query plan update claim_codes set revoked_at = 1
            where customer_id = ${"c"} and used_at is null`.execute(storage.db);
          expect(plan.rows.map((row) => row.detail).join("; ")).toBe(
            "SEARCH claim_codes USING INDEX claim_codes_pending_customer (customer_id=?)",
          );
        } else {
          const indexes = await sql<{ indexname: string; indexdef: string }>`select indexname, indexdef
            from pg_indexes where tablename = 'claim_codes' order by indexname`.execute(storage.db);
          expect(indexes.rows.map((row) => row.indexname)).toEqual([
            "claim_codes_hash",
            "claim_codes_pending_customer",
            "claim_codes_pkey",
          ]);
          expect(indexes.rows[0]?.indexdef).toMatch(
            /UNIQUE INDEX claim_codes_hash .*\(code_hash\) WHERE \(by_hash = 1\)$/,
          );
          expect(indexes.rows[1]?.indexdef).toMatch(
            /INDEX claim_codes_pending_customer .*\(customer_id\) WHERE \(\(customer_id IS NOT NULL\) AND \(used_at IS NULL\)\)$/,
          );
        }
      });

      it("checks a device's name against its owner's other devices by the owner and name together", async () => {
        if (storage.dialect === "sqlite") {
          const indexes = await sql<{ name: string }>`select name from pragma_index_list('devices')
            where name like 'devices_owner%' order by name`.execute(storage.db);
          expect(indexes.rows.map((row) => row.name)).toEqual([
            "devices_owner_customer_name",
            "devices_owner_user_name",
          ]);
          // The name check of a claim's bind (claims.ts) and of a rename: one index seek, whatever the number
          // of devices the owner has; before 0016a it read every one of them.
          for (const [column, index] of [
            ["owner_user_id", "devices_owner_user_name"],
            ["owner_customer_id", "devices_owner_customer_name"],
          ] as const) {
            const plan = await sql<{ detail: string }>`explain query plan select 1 from devices as others
              where others.name = ${"x"} and others.id <> ${"a"} and others.${sql.ref(column)} = ${"o"}`.execute(
              storage.db,
            );
            expect(plan.rows.map((row) => row.detail).join("; ")).toBe(
              `SEARCH others USING INDEX ${index} (${column}=? AND name=?)`,
            );
          }
        } else {
          const indexes = await sql<{ indexname: string; indexdef: string }>`select indexname, indexdef
            from pg_indexes where tablename = 'devices' and indexname like 'devices_owner%'
            order by indexname`.execute(storage.db);
          expect(indexes.rows.map((row) => row.indexdef.replace(/^.* USING btree /, ""))).toEqual([
            "(owner_customer_id, name)",
            "(owner_user_id, name)",
          ]);
        }
      });

      it.runIf(backend.multiNode)(
        "lets two nodes start on the same fresh database at the same time",
        async () => {
          await withFreshDatabase(async (fresh) => {
            const nodes = await Promise.all([openStorage(fresh.options), openStorage(fresh.options)]);
            try {
              expect(await appliedMigrations(nodes[0])).toEqual(await knownMigrations());
              expect(await appliedMigrations(nodes[1])).toEqual(await knownMigrations());
            } finally {
              await Promise.all(nodes.map((node) => node.close()));
            }
          });
        },
      );
    });

    // ---- users ----------------------------------------------------------------------------------------

    describe("users", () => {
      it("creates a user under the lower-cased username and refuses the same name in another case", async () => {
        const name = unique("Mixed.Case");
        const user = await services.accounts.createUser({
          username: `  ${name}@Example.COM `,
          password: PASSWORD,
        });
        expect(user.username).toBe(`${name.toLowerCase()}@example.com`);
        await expect(
          services.accounts.createUser({ username: `${name.toUpperCase()}@EXAMPLE.com`, password: PASSWORD }),
        ).rejects.toMatchObject({
          code: "CONFLICT",
        });
        const rows = await storage.db
          .selectFrom("users")
          .select("id")
          .where("username", "=", user.username)
          .execute();
        expect(rows).toHaveLength(1);
      });

      it("verifies the right password, in any case of the username, and refuses a wrong password or an unknown user", async () => {
        const { user } = await newUser();
        expect(
          await services.accounts.verifyUser({ username: user.username.toUpperCase(), password: PASSWORD }),
        ).toMatchObject({ id: user.id });
        expect(
          await services.accounts.verifyUser({ username: user.username, password: `${PASSWORD}!` }),
        ).toBeUndefined();
        expect(
          await services.accounts.verifyUser({ username: `nobody-${user.username}`, password: PASSWORD }),
        ).toBeUndefined();
      });

      it("stores passwords, tokens, refresh tokens, claim codes and client secrets only as hashes", async () => {
        const secretPassword = `pw-${newDeviceId()}`;
        const user = await services.accounts.createUser({
          username: `${unique("hash")}@example.com`,
          password: secretPassword,
        });
        const product = await newProduct(user.id);
        const customerPassword = `cpw-${newDeviceId()}`;
        const { customer } = await newCustomer(product, customerPassword);
        const tokens = await services.tokens.issue({
          subject: { kind: "user", userId: user.id },
          clientId: "particle",
        });
        const customerTokens = await services.tokens.issue({
          subject: { kind: "customer", customerId: customer.id, productId: product.id },
          clientId: "particle",
        });
        const code = await services.claims.createCode({ owner: { kind: "user", userId: user.id } });
        const { secret } = await services.products.createClient({
          productId: product.id,
          ownerUserId: null,
          name: "Backend",
          type: "installed",
        });

        const dump = JSON.stringify(await dumpTables());
        const plaintexts = [
          secretPassword,
          customerPassword,
          tokens.access_token,
          tokens.refresh_token,
          customerTokens.access_token,
          customerTokens.refresh_token,
          code.claim_code,
          secret,
        ];
        for (const plaintext of plaintexts) expect(dump).not.toContain(plaintext);
        // …and what is stored is the expected hash.
        const stored = await storage.db
          .selectFrom("users")
          .select("password_hash")
          .where("id", "=", user.id)
          .executeTakeFirstOrThrow();
        expect(stored.password_hash).toMatch(/^scrypt\$1024\$/);
        expect(
          await storage.db
            .selectFrom("access_tokens")
            .select("user_id")
            .where("token_hash", "=", sha256(tokens.access_token))
            .executeTakeFirst(),
        ).toEqual({
          user_id: user.id,
        });
        expect(
          await storage.db
            .selectFrom("refresh_tokens")
            .select("user_id")
            .where("token_hash", "=", sha256(tokens.refresh_token))
            .executeTakeFirst(),
        ).toEqual({
          user_id: user.id,
        });
        expect((await codeRow(code.claim_id)).code_hash).toBe(sha256(code.claim_code));
      });
    });

    // ---- tokens ---------------------------------------------------------------------------------------

    describe("tokens", () => {
      it("authenticates an issued token as its user until the clock passes expires_in", async () => {
        const { user } = await newUser();
        const issued = await services.tokens.issue({
          subject: { kind: "user", userId: user.id },
          clientId: "particle",
          lifetime: { expiresIn: 60 },
        });
        expect(issued).toMatchObject({ token_type: "bearer", expires_in: 60 });
        expect(issued.access_token).toMatch(/^[0-9a-f]{40}$/);
        expect(await services.tokens.authenticate(issued.access_token)).toMatchObject({
          kind: "user",
          userId: user.id,
          username: user.username,
          token: { hash: sha256(issued.access_token), clientId: "particle", expiresAt: clock.now + 60_000 },
        });
        clock.advance(59_999);
        expect(await services.tokens.authenticate(issued.access_token)).toBeDefined();
        clock.advance(1);
        expect(await services.tokens.authenticate(issued.access_token)).toBeUndefined();
      });

      it("never expires a token issued with expires_in 0", async () => {
        const { user } = await newUser();
        const issued = await services.tokens.issue({
          subject: { kind: "user", userId: user.id },
          clientId: "particle",
          lifetime: { expiresIn: 0 },
        });
        expect(issued.expires_in).toBe(0);
        const row = await storage.db
          .selectFrom("access_tokens")
          .select("expires_at")
          .where("token_hash", "=", sha256(issued.access_token))
          .executeTakeFirstOrThrow();
        expect(row.expires_at).toBeNull();
        clock.advance(10 * 365 * 24 * 3600 * 1000);
        expect(await services.tokens.authenticate(issued.access_token)).toMatchObject({
          kind: "user",
          userId: user.id,
          token: { expiresAt: null },
        });
      });

      it("authenticates customer and product tokens as their customer and product, and refuses unknown tokens", async () => {
        const { user } = await newUser();
        const product = await newProduct(user.id);
        const { customer } = await newCustomer(product);
        const customerToken = await services.tokens.issue({
          subject: { kind: "customer", customerId: customer.id, productId: product.id },
          clientId: "particle",
        });
        const productToken = await services.tokens.issue({
          subject: { kind: "product", productId: product.id },
          clientId: "particle",
        });
        expect(await services.tokens.authenticate(customerToken.access_token)).toMatchObject({
          kind: "customer",
          customerId: customer.id,
          productId: product.id,
          email: customer.email,
        });
        expect(await services.tokens.authenticate(productToken.access_token)).toMatchObject({
          kind: "product",
          productId: product.id,
        });
        expect(await services.tokens.authenticate("0".repeat(40))).toBeUndefined();
      });

      it("revokes one access token, reporting whether it existed, and leaves the user's others alone", async () => {
        const { user } = await newUser();
        const first = await services.tokens.issue({
          subject: { kind: "user", userId: user.id },
          clientId: "particle",
        });
        const second = await services.tokens.issue({
          subject: { kind: "user", userId: user.id },
          clientId: "particle",
        });
        expect(await services.tokens.revoke(first.access_token)).toBe(true);
        expect(await services.tokens.revoke(first.access_token)).toBe(false);
        expect(await services.tokens.authenticate(first.access_token)).toBeUndefined();
        expect(await services.tokens.authenticate(second.access_token)).toBeDefined();
      });

      it("revokes every access and refresh token of one user or customer and nobody else's", async () => {
        const { user } = await newUser();
        const { user: other } = await newUser();
        const product = await newProduct(user.id);
        const { customer } = await newCustomer(product);
        const mine = [
          await services.tokens.issue({ subject: { kind: "user", userId: user.id }, clientId: "particle" }),
          await services.tokens.issue({ subject: { kind: "user", userId: user.id }, clientId: "cli" }),
        ];
        const theirs = await services.tokens.issue({
          subject: { kind: "user", userId: other.id },
          clientId: "particle",
        });
        const customers = await services.tokens.issue({
          subject: { kind: "customer", customerId: customer.id, productId: product.id },
          clientId: "particle",
        });

        await services.tokens.revokeAll({ userId: user.id });
        for (const token of mine)
          expect(await services.tokens.authenticate(token.access_token)).toBeUndefined();
        expect(
          await storage.db
            .selectFrom("refresh_tokens")
            .select("token_hash")
            .where("user_id", "=", user.id)
            .execute(),
        ).toEqual([]);
        expect(await services.tokens.authenticate(theirs.access_token)).toBeDefined();
        expect(await services.tokens.authenticate(customers.access_token)).toBeDefined();

        await services.tokens.revokeAll({ customerId: customer.id });
        expect(await services.tokens.authenticate(customers.access_token)).toBeUndefined();
        expect(
          await storage.db
            .selectFrom("refresh_tokens")
            .select("token_hash")
            .where("customer_id", "=", customer.id)
            .execute(),
        ).toEqual([]);
        expect(await services.tokens.authenticate(theirs.access_token)).toBeDefined();
      });

      it("trades a refresh token for a new pair once and refuses the spent refresh token", async () => {
        const { user } = await newUser();
        const product = await newProduct(user.id);
        const { customer } = await newCustomer(product);
        const first = await services.tokens.issue({
          subject: { kind: "customer", customerId: customer.id, productId: product.id },
          clientId: "app-1",
        });
        const second = await services.tokens.refresh({
          refreshToken: first.refresh_token,
          clientId: "app-1",
          registeredClient: true,
        });
        expect(second.refresh_token).not.toBe(first.refresh_token);
        expect(second.access_token).not.toBe(first.access_token);
        expect(await services.tokens.authenticate(second.access_token)).toMatchObject({
          kind: "customer",
          customerId: customer.id,
          productId: product.id,
        });
        await expect(
          services.tokens.refresh({
            refreshToken: first.refresh_token,
            clientId: "app-1",
            registeredClient: true,
          }),
        ).rejects.toMatchObject({
          code: "INVALID_GRANT",
        });
        // The new refresh token works in turn.
        await expect(
          services.tokens.refresh({
            refreshToken: second.refresh_token,
            clientId: "app-1",
            registeredClient: true,
          }),
        ).resolves.toMatchObject({
          token_type: "bearer",
        });
      });

      it("refuses a refresh token from another client, from an unregistered client, or after it expired, without spending it", async () => {
        const { user } = await newUser();
        const issued = await services.tokens.issue({
          subject: { kind: "user", userId: user.id },
          clientId: "app-2",
        });
        await expect(
          services.tokens.refresh({
            refreshToken: issued.refresh_token,
            clientId: "other",
            registeredClient: true,
          }),
        ).rejects.toMatchObject({
          code: "INVALID_GRANT",
        });
        await expect(
          services.tokens.refresh({
            refreshToken: issued.refresh_token,
            clientId: "app-2",
            registeredClient: false,
          }),
        ).rejects.toMatchObject({
          code: "INVALID_GRANT",
        });
        const stillThere = await storage.db
          .selectFrom("refresh_tokens")
          .select("expires_at")
          .where("token_hash", "=", sha256(issued.refresh_token))
          .executeTakeFirstOrThrow();
        expect(stillThere.expires_at).toBe(clock.now + config.refreshTokenTtlSeconds * 1000);
        clock.advance(config.refreshTokenTtlSeconds * 1000);
        await expect(
          services.tokens.refresh({
            refreshToken: issued.refresh_token,
            clientId: "app-2",
            registeredClient: true,
          }),
        ).rejects.toMatchObject({
          code: "INVALID_GRANT",
        });
      });

      it("gives exactly one new pair when one refresh token is presented several times at once", async () => {
        const { user } = await newUser();
        const issued = await services.tokens.issue({
          subject: { kind: "user", userId: user.id },
          clientId: "app-3",
        });
        const results = await Promise.allSettled(
          Array.from({ length: RACERS }, () =>
            services.tokens.refresh({
              refreshToken: issued.refresh_token,
              clientId: "app-3",
              registeredClient: true,
            }),
          ),
        );
        expect(results.filter((result) => result.status === "fulfilled")).toHaveLength(1);
        for (const result of results) {
          if (result.status === "rejected") expect(result.reason).toMatchObject({ code: "INVALID_GRANT" });
        }
      });

      it("returns every bigint timestamp as an exact JavaScript number", async () => {
        clock.advance(123);
        const now = clock.now;
        expect(now).toBeGreaterThan(2 ** 32);
        const { user, owner, principal } = await newUser();
        const issued = await services.tokens.issue({
          subject: { kind: "user", userId: user.id },
          clientId: "particle",
          lifetime: { expiresIn: 7 },
        });
        const code = await services.claims.createCode({ owner });
        const device = await registerDevice(principal);
        await services.claims.claimByCode({ deviceId: device.id, code: code.claim_code });
        const ip = unique("ip");
        await services.lockout.recordFailure(ip);

        const userRow = await storage.db
          .selectFrom("users")
          .select("created_at")
          .where("id", "=", user.id)
          .executeTakeFirstOrThrow();
        const tokenRow = await storage.db
          .selectFrom("access_tokens")
          .select(["created_at", "expires_at"])
          .where("token_hash", "=", sha256(issued.access_token))
          .executeTakeFirstOrThrow();
        const codeRecord = await codeRow(code.claim_id);
        const deviceRecord = await deviceRow(device.id);
        const failure = await storage.db
          .selectFrom("login_failures")
          .select(["updated_at", "failures"])
          .where("ip", "=", ip)
          .executeTakeFirstOrThrow();
        const [attempt] = await services.claims.attemptsForDevice(device.id);
        const values = {
          user: userRow.created_at,
          tokenCreated: tokenRow.created_at,
          tokenExpires: tokenRow.expires_at,
          codeCreated: codeRecord.created_at,
          codeExpires: codeRecord.expires_at,
          codeUsed: codeRecord.used_at,
          deviceClaimed: deviceRecord.claimed_at,
          deviceCreated: deviceRecord.created_at,
          failureUpdated: failure.updated_at,
          failures: failure.failures,
          attemptAt: attempt?.at,
        };
        expect(values).toEqual({
          user: now,
          tokenCreated: now,
          tokenExpires: now + 7000,
          codeCreated: now,
          codeExpires: now + CLAIM_CODE_TTL_SECONDS * 1000,
          codeUsed: now,
          deviceClaimed: now,
          deviceCreated: now,
          failureUpdated: now,
          failures: 1,
          attemptAt: now,
        });
        for (const value of Object.values(values)) expect(typeof value).toBe("number");
      });
    });

    // ---- products -------------------------------------------------------------------------------------

    describe("products", () => {
      it("numbers the first product of a fresh database 1000 and the next ones upward from there", async () => {
        await withFreshDatabase(async (fresh) => {
          const node = await openStorage(fresh.options);
          try {
            const freshServices = createServices({ db: node.db, config });
            const user = await freshServices.accounts.createUser({
              username: "owner@example.com",
              password: PASSWORD,
            });
            const first = await freshServices.products.create({
              userId: user.id,
              name: "First",
              platformId: PHOTON,
            });
            const second = await freshServices.products.create({
              userId: user.id,
              name: "Second",
              platformId: PHOTON,
            });
            expect([first.id, second.id]).toEqual([1000, 1001]);
            expect(typeof (await freshServices.products.find("1000"))?.id).toBe("number");
          } finally {
            await node.close();
          }
        });
      });

      it("gives two products of the same name different slugs and finds each by id or by slug", async () => {
        const { user } = await newUser();
        const name = unique("Smart Lamp");
        const first = await newProduct(user.id, PHOTON, name);
        const second = await newProduct(user.id, PHOTON, name);
        expect(first.slug).toBe(name.toLowerCase().replaceAll(" ", "-"));
        expect(second.slug).not.toBe(first.slug);
        expect(second.id).toBeGreaterThan(first.id);
        expect(await services.products.find(String(first.id))).toEqual(first);
        expect(await services.products.find(first.slug)).toEqual(first);
        expect(await services.products.find(second.slug)).toEqual(second);
        expect(await services.products.find("no-such-product")).toBeUndefined();
        expect(await services.products.find("999999")).toBeUndefined();
        // Larger than any key column can hold: still simply not found.
        expect(await services.products.find("99999999999999999999")).toBeUndefined();
        expect(await services.products.find(String(2 ** 31))).toBeUndefined();
      });

      it("refuses a platform id that an integer column cannot hold, on every dialect alike", async () => {
        const { user, principal } = await newUser();
        await expect(newProduct(user.id, 2 ** 31)).rejects.toMatchObject({ code: "BAD_REQUEST" });
        await expect(registerDevice(principal, { platformId: 2 ** 31 })).rejects.toMatchObject({
          code: "BAD_REQUEST",
        });
        expect(await newProduct(user.id, 2 ** 31 - 1)).toMatchObject({ platform_id: 2 ** 31 - 1 });
        expect(await registerDevice(principal, { platformId: 2 ** 31 - 1 })).toMatchObject({
          platform_id: 2 ** 31 - 1,
        });
      });

      it("lists a user's products in id order and lets only team members and the product's own token administer it", async () => {
        const { user, principal } = await newUser();
        const { principal: stranger } = await newUser();
        const first = await newProduct(user.id);
        const second = await newProduct(user.id);
        expect((await services.products.listForUser(user.id)).map((product) => product.id)).toEqual([
          first.id,
          second.id,
        ]);
        expect(await services.products.canAdminister(principal, first.id)).toBe(true);
        expect(await services.products.canAdminister(stranger, first.id)).toBe(false);
        const token = { hash: "", clientId: "", expiresAt: null };
        expect(
          await services.products.canAdminister({ kind: "product", productId: first.id, token }, first.id),
        ).toBe(true);
        expect(
          await services.products.canAdminister({ kind: "product", productId: second.id, token }, first.id),
        ).toBe(false);
      });

      it("authenticates a product's OAuth client with its secret, refuses a wrong secret, and stores only the secret's hash", async () => {
        const { user } = await newUser();
        const product = await newProduct(user.id);
        const { client, secret } = await services.products.createClient({
          productId: product.id,
          ownerUserId: null,
          name: "Mobile App",
          type: "installed",
          scope: "customers:create",
        });
        expect(secret).toMatch(/^[0-9a-f]{40}$/);
        expect(await services.products.authenticateClient(client.id, secret)).toMatchObject({
          id: client.id,
          product_id: product.id,
          scope: "customers:create",
        });
        expect(
          await services.products.authenticateClient(client.id, `${secret.slice(0, -1)}x`),
        ).toBeUndefined();
        expect(await services.products.authenticateClient(`${client.id}-nope`, secret)).toBeUndefined();
        const row = await storage.db
          .selectFrom("oauth_clients")
          .selectAll()
          .where("id", "=", client.id)
          .executeTakeFirstOrThrow();
        expect(row.secret_hash).toBe(sha256(secret));
        expect(JSON.stringify(row)).not.toContain(secret);
        expect((await services.products.listClients(product.id)).map((listed) => listed.id)).toEqual([
          client.id,
        ]);
      });
    });

    // ---- customers ------------------------------------------------------------------------------------

    describe("customers", () => {
      it("creates a shadow customer with no password, who can never log in with one", async () => {
        const { user } = await newUser();
        const product = await newProduct(user.id);
        const { customer } = await newCustomer(product);
        expect(customer.password_hash).toBeNull();
        const row = await storage.db
          .selectFrom("customers")
          .select("password_hash")
          .where("id", "=", customer.id)
          .executeTakeFirstOrThrow();
        expect(row.password_hash).toBeNull();
        expect(
          await services.accounts.verifyCustomer({
            productId: product.id,
            email: customer.email,
            password: "",
          }),
        ).toBeUndefined();
        expect(
          await services.accounts.verifyCustomer({
            productId: product.id,
            email: customer.email,
            password: PASSWORD,
          }),
        ).toBeUndefined();
      });

      it("creates a customer with a password that verifies, once per product and e-mail", async () => {
        const { user } = await newUser();
        const product = await newProduct(user.id);
        const otherProduct = await newProduct(user.id);
        const { customer } = await newCustomer(product, PASSWORD);
        expect(
          await services.accounts.verifyCustomer({
            productId: product.id,
            email: customer.email.toUpperCase(),
            password: PASSWORD,
          }),
        ).toMatchObject({
          id: customer.id,
        });
        expect(
          await services.accounts.verifyCustomer({
            productId: product.id,
            email: customer.email,
            password: "wrong password",
          }),
        ).toBeUndefined();
        expect(
          await services.accounts.verifyCustomer({
            productId: otherProduct.id,
            email: customer.email,
            password: PASSWORD,
          }),
        ).toBeUndefined();
        await expect(
          services.accounts.createCustomer({
            productId: product.id,
            email: customer.email.toUpperCase(),
            password: undefined,
          }),
        ).rejects.toMatchObject({
          code: "CONFLICT",
        });
        await expect(
          services.accounts.createCustomer({
            productId: otherProduct.id,
            email: customer.email,
            password: undefined,
          }),
        ).resolves.toMatchObject({
          email: customer.email,
        });
        expect(await services.accounts.findCustomer(product.id, customer.id)).toMatchObject({
          id: customer.id,
        });
      });

      it("deletes a customer with its tokens and pending claim codes, releasing its devices into the product", async () => {
        const { user, principal } = await newUser();
        const product = await newProduct(user.id);
        const { customer, owner } = await newCustomer(product);
        const { customer: neighbour, owner: neighbourOwner } = await newCustomer(product);
        const token = await services.tokens.issue({
          subject: { kind: "customer", customerId: customer.id, productId: product.id },
          clientId: "particle",
        });
        const neighbourToken = await services.tokens.issue({
          subject: { kind: "customer", customerId: neighbour.id, productId: product.id },
          clientId: "particle",
        });
        const device = await registerDevice(principal, { productId: product.id });
        const usedCode = await services.claims.createCode({ owner });
        expect(
          await services.claims.claimByCode({ deviceId: device.id, code: usedCode.claim_code }),
        ).toMatchObject({ ok: true, reason: "claimed" });
        const pendingCode = await services.claims.createCode({ owner });
        const neighbourCode = await services.claims.createCode({ owner: neighbourOwner });

        clock.advance(1000);
        await services.accounts.deleteCustomer({ productId: product.id, email: customer.email });

        expect(await services.accounts.findCustomer(product.id, customer.email)).toBeUndefined();
        expect(await services.tokens.authenticate(token.access_token)).toBeUndefined();
        expect(
          await storage.db
            .selectFrom("refresh_tokens")
            .select("token_hash")
            .where("customer_id", "=", customer.id)
            .execute(),
        ).toEqual([]);
        expect(await services.tokens.authenticate(neighbourToken.access_token)).toBeDefined();
        expect(await codeRow(pendingCode.claim_id)).toMatchObject({ revoked_at: clock.now, used_at: null });
        expect(await codeRow(usedCode.claim_id)).toMatchObject({
          revoked_at: null,
          used_at: expect.any(Number),
        });
        expect(await codeRow(neighbourCode.claim_id)).toMatchObject({ revoked_at: null });
        expect(await deviceRow(device.id)).toMatchObject({
          owner_customer_id: null,
          owner_user_id: null,
          claimed_at: null,
          product_id: product.id,
          updated_at: clock.now,
        });
        await expect(
          services.accounts.deleteCustomer({ productId: product.id, email: customer.email }),
        ).rejects.toMatchObject({ code: "NOT_FOUND" });
      });
    });

    // ---- devices --------------------------------------------------------------------------------------

    describe("devices", () => {
      it("stores a registered key as normalised SPKI PEM under the lower-case ID, whatever form the PEM came in", async () => {
        const { principal, user } = await newUser();
        const id = newDeviceId();
        const device = await registerDevice(principal, {
          deviceId: id.toUpperCase(),
          publicKey: pkcs1WithCrlf(KEYS[0].publicKeyPem),
        });
        expect(device).toMatchObject({
          id,
          public_key: KEYS[0].publicKeyPem,
          key_algorithm: "rsa",
          registered_by_user_id: user.id,
          owner_user_id: null,
          owner_customer_id: null,
          platform_id: PHOTON,
          quarantined: 0,
          online: 0,
          functions: "[]",
          variables: "{}",
        });
        expect((await deviceRow(id)).public_key).toBe(KEYS[0].publicKeyPem);
        await expect(registerDevice(principal, { publicKey: "not a key" })).rejects.toMatchObject({
          code: "BAD_REQUEST",
        });
        await expect(
          services.devices.register({
            principal,
            deviceId: newDeviceId(),
            publicKey: KEYS[0].publicKeyPem,
            algorithm: "ecc",
            allowNew: true,
            productId: null,
            platformId: PHOTON,
            mayAdministerProduct: () => Promise.resolve(false),
          }),
        ).rejects.toMatchObject({ code: "BAD_REQUEST" });
        await expect(registerDevice(principal, { deviceId: "not-a-device-id" })).rejects.toMatchObject({
          code: "BAD_REQUEST",
        });
      });

      it("lets the registering user, the owner and the product team replace a key and refuses anyone else", async () => {
        const { principal: registrar, user: registrarUser } = await newUser();
        const { principal: stranger } = await newUser();
        const { principal: teamMember, user: teamUser } = await newUser();
        const { principal: buyer, owner: buyerOwner } = await newUser();
        const product = await newProduct(teamUser.id);
        const device = await registerDevice(registrar);

        await expect(
          registerDevice(stranger, { deviceId: device.id, publicKey: KEYS[1].publicKeyPem }),
        ).rejects.toMatchObject({
          code: "DEVICE_PERMISSION_DENIED",
        });
        expect((await deviceRow(device.id)).public_key).toBe(KEYS[0].publicKeyPem);

        const replaced = await registerDevice(registrar, {
          deviceId: device.id,
          publicKey: KEYS[1].publicKeyPem,
        });
        expect(replaced.public_key).toBe(KEYS[1].publicKeyPem);

        // Once claimed, the owner may replace it too.
        const code = await services.claims.createCode({ owner: buyerOwner });
        expect(
          await services.claims.claimByCode({ deviceId: device.id, code: code.claim_code }),
        ).toMatchObject({ ok: true });
        expect(
          (await registerDevice(buyer, { deviceId: device.id, publicKey: KEYS[0].publicKeyPem })).public_key,
        ).toBe(KEYS[0].publicKeyPem);

        // A product team member may replace the key of a device in the product, but not of one outside it.
        await expect(
          registerDevice(teamMember, { deviceId: device.id, publicKey: KEYS[1].publicKeyPem }),
        ).rejects.toMatchObject({
          code: "DEVICE_PERMISSION_DENIED",
        });
        const inProduct = await registerDevice(registrar, { productId: product.id });
        const byTeam = await registerDevice(teamMember, {
          deviceId: inProduct.id,
          publicKey: KEYS[1].publicKeyPem,
        });
        expect(byTeam).toMatchObject({
          public_key: KEYS[1].publicKeyPem,
          product_id: product.id,
          registered_by_user_id: registrarUser.id,
        });
      });

      it("lists an owner's devices most recently connected first, never-connected ones last, ties by ID", async () => {
        const { principal, owner } = await newUser();
        const { owner: otherOwner } = await newUser();
        const devices: DeviceRow[] = [];
        for (let index = 0; index < 6; index += 1) devices.push(await registerDevice(principal));
        const handshakes = [null, 100, 300, null, 100, 200];
        for (const [index, device] of devices.entries()) {
          const code = await services.claims.createCode({ owner: index === 5 ? otherOwner : owner });
          expect(
            await services.claims.claimByCode({ deviceId: device.id, code: code.claim_code }),
          ).toMatchObject({ ok: true });
          const at = handshakes[index] ?? null;
          await storage.db
            .updateTable("devices")
            .set({ last_handshake_at: at === null ? null : clock.now + at })
            .where("id", "=", device.id)
            .execute();
        }
        const byId = (indexes: number[]) => indexes.map((index) => devices[index]?.id ?? "").sort();
        const expected = [devices[2]?.id, ...byId([1, 4]), ...byId([0, 3])];
        expect((await services.devices.listOwned(owner)).map((device) => device.id)).toEqual(expected);
        expect(await services.devices.ownedIds(owner)).toEqual(expected);
        expect(await services.devices.ownedIds(otherOwner)).toEqual([devices[5]?.id]);
      });

      it("answers each fresh claim code of one burst with its own owner's device IDs, users' and customers', in the list's order", async () => {
        const { principal, owner, user } = await newUser();
        const { owner: otherUser } = await newUser();
        const { owner: newcomer } = await newUser();
        const product = await newProduct(user.id);
        const { owner: customer } = await newCustomer(product);
        const owned: DeviceRow[] = [];
        for (let index = 0; index < 3; index += 1) owned.push(await registerDevice(principal));
        const customers = await registerDevice(principal, { productId: product.id });
        const others = await registerDevice(principal);
        for (const [device, by] of [
          ...owned.map((device) => [device, owner] as const),
          [customers, customer] as const,
          [others, otherUser] as const,
        ]) {
          const code = await services.claims.createCode({ owner: by });
          expect(
            await services.claims.claimByCode({ deviceId: device.id, code: code.claim_code, source: "api" }),
          ).toMatchObject({ ok: true });
        }
        for (const [device, at] of [
          [owned[0], 100],
          [owned[1], null],
          [owned[2], 300],
        ] as const)
          await storage.db
            .updateTable("devices")
            .set({ last_handshake_at: at === null ? null : clock.now + at })
            .where("id", "=", device?.id ?? "")
            .execute();
        const expected = [owned[2]?.id, owned[0]?.id, owned[1]?.id];
        expect(await services.devices.ownedIds(owner)).toEqual(expected);

        // Asked for in one turn of the event loop, the codes are stored together (on PostgreSQL by the
        // statement that also reads the owners' devices).
        const askers = [owner, customer, newcomer, otherUser, owner];
        const answers = await Promise.all(
          askers.map((asker) => services.claims.createCode({ owner: asker })),
        );
        expect(answers.map((answer) => answer.device_ids)).toEqual([
          expected,
          [customers.id],
          [],
          [others.id],
          expected,
        ]);
        expect(answers[0]?.device_ids).not.toBe(answers[4]?.device_ids);
        for (const [index, answer] of answers.entries()) {
          const asker = askers[index];
          expect(await codeRow(answer.claim_id)).toMatchObject({
            code_hash: sha256(answer.claim_code),
            user_id: asker?.kind === "user" ? asker.userId : null,
            customer_id: asker?.kind === "customer" ? asker.customerId : null,
            used_at: null,
          });
        }
        // Each is claimable by its owner's device.
        const fresh = await registerDevice(principal, { productId: product.id });
        expect(
          await services.claims.claimByCode({ deviceId: fresh.id, code: answers[1]?.claim_code ?? "" }),
        ).toMatchObject({ ok: true, owner: customer });
      });

      it("imports devices into a product, reporting unknown or other-platform IDs as invalid and other products' devices as nonmembers", async () => {
        const { principal, user } = await newUser();
        const product = await newProduct(user.id, PHOTON);
        const otherProduct = await newProduct(user.id, PHOTON);
        const free = await registerDevice(principal);
        const alreadyHere = await registerDevice(principal, { productId: product.id });
        const elsewhere = await registerDevice(principal, { productId: otherProduct.id });
        const electron = await registerDevice(principal, { platformId: ELECTRON });
        const unknown = newDeviceId();
        await storage.db.updateTable("devices").set({ quarantined: 1 }).where("id", "=", free.id).execute();

        clock.advance(5);
        const result = await services.devices.importIntoProduct({
          productId: product.id,
          platformId: PHOTON,
          ids: [
            free.id.toUpperCase(),
            ` ${alreadyHere.id} `,
            elsewhere.id,
            electron.id,
            unknown,
            "",
            "garbage",
            free.id.toUpperCase(),
          ],
        });
        expect(result).toEqual({
          updated: 2,
          nonmemberDeviceIds: [elsewhere.id],
          invalidDeviceIds: [electron.id, unknown, "garbage"],
        });
        expect(await deviceRow(free.id)).toMatchObject({
          product_id: product.id,
          quarantined: 0,
          denied: 0,
          updated_at: clock.now,
        });
        expect(await deviceRow(elsewhere.id)).toMatchObject({ product_id: otherProduct.id });
        expect(await deviceRow(electron.id)).toMatchObject({ product_id: null });
      });

      it("filters a product's devices by ID, name (case-insensitively, underscores literal), serial number and quarantine, and pages them", async () => {
        const { principal, user } = await newUser();
        const product = await newProduct(user.id);
        const otherProduct = await newProduct(user.id);
        const names = ["amber_badger1", "Amber_Crane2", "amberXbadger", "quiet_newt", "zebra%50"];
        const devices: DeviceRow[] = [];
        for (const [index, name] of names.entries()) {
          const device = await registerDevice(principal, { productId: product.id });
          await storage.db
            .updateTable("devices")
            .set({
              name,
              serial_number: `SN-${index}`,
              quarantined: index === 3 ? 1 : 0,
              firmware_version: index,
            })
            .where("id", "=", device.id)
            .execute();
          devices.push(device);
        }
        const outsider = await registerDevice(principal, { productId: otherProduct.id });
        await storage.db
          .updateTable("devices")
          .set({ name: "amber_outsider" })
          .where("id", "=", outsider.id)
          .execute();

        const list = async (filter: Partial<ProductDeviceQuery>) => {
          const page = await services.devices.listProduct(product.id, { page: 1, perPage: 25, ...filter });
          return page.devices.map((device) => device.name);
        };
        expect(await list({})).toHaveLength(5);
        expect(await list({ sortAttr: "deviceName" })).toEqual([
          "Amber_Crane2",
          "amberXbadger",
          "amber_badger1",
          "quiet_newt",
          "zebra%50",
        ]);
        expect(await list({ sortAttr: "firmwareVersion", sortDir: "desc" })).toEqual([...names].reverse());
        expect(await list({ deviceName: "amber_", sortAttr: "deviceName" })).toEqual([
          "Amber_Crane2",
          "amber_badger1",
        ]);
        expect(await list({ deviceName: "AMBER", sortAttr: "deviceName" })).toEqual([
          "Amber_Crane2",
          "amberXbadger",
          "amber_badger1",
        ]);
        expect(await list({ deviceName: "%" })).toEqual(["zebra%50"]);
        expect(await list({ deviceId: devices[1]?.id.slice(4, 16).toUpperCase() })).toEqual(["Amber_Crane2"]);
        expect(await list({ serialNumber: "SN-2" })).toEqual(["amberXbadger"]);
        expect(await list({ quarantined: true })).toEqual(["quiet_newt"]);
        expect(await list({ quarantined: false })).toHaveLength(4);

        const pages = [];
        for (let page = 1; page <= 3; page += 1)
          pages.push(
            await services.devices.listProduct(product.id, { page, perPage: 2, sortAttr: "deviceName" }),
          );
        expect(pages.map((page) => page.totalPages)).toEqual([3, 3, 3]);
        expect(pages.map((page) => page.devices.map((device) => device.name))).toEqual([
          ["Amber_Crane2", "amberXbadger"],
          ["amber_badger1", "quiet_newt"],
          ["zebra%50"],
        ]);
        expect((await services.devices.listProduct(product.id, { page: 4, perPage: 2 })).devices).toEqual([]);
      });
    });

    // ---- claiming -------------------------------------------------------------------------------------

    describe("claimByCode", () => {
      it("binds the device to the code's user and spends the code in one step, recording the attempt as claimed", async () => {
        const { principal, owner, user } = await newUser();
        const device = await registerDevice(principal);
        const code = await services.claims.createCode({ owner });
        expect(code.claim_code).toHaveLength(63);
        expect(code.device_ids).toEqual([]);
        clock.advance(10);
        const result = await services.claims.claimByCode({
          deviceId: device.id.toUpperCase(),
          code: code.claim_code,
        });
        expect(result).toEqual({
          ok: true,
          reason: "claimed",
          claimId: code.claim_id,
          owner,
          codeOwner: owner,
          events: [
            expect.objectContaining({
              name: "roost/claim/attempt",
              ownerUserId: user.id,
              webhooksQueued: true,
            }),
            expect.objectContaining({
              name: "roost/device/claimed",
              ownerUserId: user.id,
              webhooksQueued: true,
            }),
          ],
        });
        const row = await deviceRow(device.id);
        expect(row).toMatchObject({
          owner_user_id: user.id,
          owner_customer_id: null,
          claimed_at: clock.now,
          updated_at: clock.now,
        });
        expect(row.name).toMatch(/^[a-z]+_[a-z]+\d+$/);
        expect(await codeRow(code.claim_id)).toMatchObject({
          used_at: clock.now,
          device_id: device.id,
          revoked_at: null,
        });
        expect(await services.claims.attemptsForCode(code.claim_id)).toEqual([
          expect.objectContaining({
            device_id: device.id,
            outcome: "claimed",
            reason: "claimed",
            source: "gateway",
            at: clock.now,
          }),
        ]);
        expect((await services.claims.createCode({ owner })).device_ids).toEqual([device.id]);
      });

      it("binds a product device to the customer who created the code", async () => {
        const { principal, user } = await newUser();
        const product = await newProduct(user.id);
        const { customer, owner } = await newCustomer(product);
        const device = await registerDevice(principal, { productId: product.id });
        const code = await services.claims.createCode({ owner });
        expect(
          await services.claims.claimByCode({ deviceId: device.id, code: code.claim_code, source: "api" }),
        ).toEqual({
          ok: true,
          reason: "claimed",
          claimId: code.claim_id,
          owner,
          codeOwner: owner,
          // The customer's product hears of the claim too: its backend's webhooks.
          events: [
            expect.objectContaining({
              name: "roost/claim/attempt",
              ownerCustomerId: customer.id,
              productId: product.id,
            }),
            expect.objectContaining({
              name: "roost/device/claimed",
              ownerCustomerId: customer.id,
              productId: product.id,
              data: JSON.stringify({
                device_id: device.id,
                claim_id: code.claim_id,
                source: "api",
                owner: {
                  kind: "customer",
                  customer_id: customer.id,
                  email: customer.email,
                  product_id: product.id,
                },
              }),
            }),
          ],
        });
        expect(await deviceRow(device.id)).toMatchObject({
          owner_customer_id: customer.id,
          owner_user_id: null,
          product_id: product.id,
        });
        expect(await services.devices.ownedIds(owner)).toEqual([device.id]);
      });

      it("refuses an unknown code and changes nothing", async () => {
        const { principal } = await newUser();
        const device = await registerDevice(principal);
        await expectRefusedChangingNothing(
          { deviceId: device.id, code: "A".repeat(63) },
          "unknown_code",
          null,
        );
      });

      it("finds a fresh code by the row ID it carries, and refuses that ID with another secret, changing nothing", async () => {
        const { principal, owner } = await newUser();
        const device = await registerDevice(principal);
        const code = await services.claims.createCode({ owner });
        expect(code.claim_code).toMatch(/^[A-Za-z0-9+/]{63}$/);
        expect(claimCodeRowId(code.claim_code)).toBe(code.claim_id);
        expect(await codeRow(code.claim_id)).toMatchObject({
          by_hash: 0,
          code_hash: sha256(code.claim_code),
        });
        // The same row ID with a secret that is not the code's: no code, whatever the ID names.
        const forged = code.claim_code.slice(0, 20) + legacyClaimCode().slice(0, 43);
        expect(claimCodeRowId(forged)).toBe(code.claim_id);
        await expectRefusedChangingNothing({ deviceId: device.id, code: forged }, "unknown_code", null);
        clock.advance(1);
        expect(
          await services.claims.claimByCode({ deviceId: device.id, code: code.claim_code }),
        ).toMatchObject({
          ok: true,
          claimId: code.claim_id,
        });
      });

      it("lets a preset code (an ICCID) be asked for again by its owner, not by another, and claims with it by its hash", async () => {
        const { principal, owner } = await newUser();
        const other = await newUser();
        const device = await registerDevice(principal);
        const iccid = `8901${Date.now().toString().slice(-12)}${Math.floor(Math.random() * 1e4)}`;
        const first = await services.claims.createCode({ owner, presetCode: iccid });
        expect(first.claim_code).toBe(iccid);
        await expect(
          services.claims.createCode({ owner: other.owner, presetCode: iccid }),
        ).rejects.toMatchObject({
          code: "CONFLICT",
        });
        clock.advance(1);
        const again = await services.claims.createCode({ owner, presetCode: iccid });
        expect(again.claim_id).not.toBe(first.claim_id);
        expect(await codeRow(again.claim_id)).toMatchObject({
          by_hash: 1,
          code_hash: sha256(iccid),
          used_at: null,
        });
        clock.advance(1);
        expect(await services.claims.claimByCode({ deviceId: device.id, code: iccid })).toMatchObject({
          ok: true,
          claimId: again.claim_id,
          owner,
        });
      });

      it("refuses a code once the clock reaches the end of its lifetime and changes nothing", async () => {
        const { principal, owner } = await newUser();
        const device = await registerDevice(principal);
        const code = await services.claims.createCode({ owner });
        clock.advance(CLAIM_CODE_TTL_SECONDS * 1000 - 1);
        await expectRefusedChangingNothing(
          { deviceId: device.id, code: code.claim_code },
          "expired_code",
          code.claim_id,
        );
      });

      it("refuses a code already spent on another device and changes nothing", async () => {
        const { principal, owner } = await newUser();
        const first = await registerDevice(principal);
        const second = await registerDevice(principal);
        const code = await services.claims.createCode({ owner });
        expect(
          await services.claims.claimByCode({ deviceId: first.id, code: code.claim_code }),
        ).toMatchObject({ ok: true });
        await expectRefusedChangingNothing(
          { deviceId: second.id, code: code.claim_code },
          "used_code",
          code.claim_id,
        );
      });

      it("refuses a code whose customer was deleted and changes nothing", async () => {
        const { principal, user } = await newUser();
        const product = await newProduct(user.id);
        const { customer, owner } = await newCustomer(product);
        const device = await registerDevice(principal, { productId: product.id });
        const code = await services.claims.createCode({ owner });
        await services.accounts.deleteCustomer({ productId: product.id, email: customer.email });
        await expectRefusedChangingNothing(
          { deviceId: device.id, code: code.claim_code },
          "revoked_code",
          code.claim_id,
        );
      });

      it("refuses a customer's code for a device of another product and changes nothing", async () => {
        const { principal, user } = await newUser();
        const product = await newProduct(user.id);
        const otherProduct = await newProduct(user.id);
        const { owner } = await newCustomer(product);
        const device = await registerDevice(principal, { productId: otherProduct.id });
        const code = await services.claims.createCode({ owner });
        await expectRefusedChangingNothing(
          { deviceId: device.id, code: code.claim_code },
          "wrong_product",
          code.claim_id,
        );
      });

      it("refuses a customer's code for a device in no product and changes nothing", async () => {
        const { principal, user } = await newUser();
        const product = await newProduct(user.id);
        const { owner } = await newCustomer(product);
        const device = await registerDevice(principal);
        const code = await services.claims.createCode({ owner });
        await expectRefusedChangingNothing(
          { deviceId: device.id, code: code.claim_code },
          "device_not_in_product",
          code.claim_id,
        );
      });

      it("refuses a device owned by someone else and changes nothing", async () => {
        const { principal, owner } = await newUser();
        const { owner: otherOwner } = await newUser();
        const device = await registerDevice(principal);
        const theirs = await services.claims.createCode({ owner: otherOwner });
        expect(
          await services.claims.claimByCode({ deviceId: device.id, code: theirs.claim_code }),
        ).toMatchObject({ ok: true });
        const mine = await services.claims.createCode({ owner });
        await expectRefusedChangingNothing(
          { deviceId: device.id, code: mine.claim_code },
          "owned_by_other",
          mine.claim_id,
        );
      });

      it("refuses a device that was never registered and changes nothing", async () => {
        const { owner } = await newUser();
        const code = await services.claims.createCode({ owner });
        await expectRefusedChangingNothing(
          { deviceId: newDeviceId(), code: code.claim_code },
          "unknown_device",
          code.claim_id,
        );
      });

      it("accepts as already owned a device presenting again the code it was claimed with, changing nothing", async () => {
        const { principal, owner } = await newUser();
        const device = await registerDevice(principal);
        const code = await services.claims.createCode({ owner });
        expect(
          await services.claims.claimByCode({ deviceId: device.id, code: code.claim_code }),
        ).toMatchObject({ ok: true, reason: "claimed" });
        const before = await claimState();
        clock.advance(1);
        expect(await services.claims.claimByCode({ deviceId: device.id, code: code.claim_code })).toEqual({
          ok: true,
          reason: "already_owned",
          claimId: code.claim_id,
          owner: null,
          codeOwner: owner,
          events: [expect.objectContaining({ name: "roost/claim/attempt" })],
        });
        const after = await claimState();
        expect(after.devices).toEqual(before.devices);
        expect(after.codes).toEqual(before.codes);
        expect(await services.claims.attemptsForDevice(device.id)).toEqual([
          expect.objectContaining({ outcome: "claimed", reason: "claimed" }),
          expect.objectContaining({ outcome: "refused", reason: "already_owned", at: clock.now }),
        ]);
      });

      it("accepts as already owned a device presenting a fresh code of its own owner, spending that code", async () => {
        const { principal, owner, user } = await newUser();
        const device = await registerDevice(principal);
        const first = await services.claims.createCode({ owner });
        expect(
          await services.claims.claimByCode({ deviceId: device.id, code: first.claim_code }),
        ).toMatchObject({ ok: true });
        const claimedAt = (await deviceRow(device.id)).claimed_at;
        const second = await services.claims.createCode({ owner });
        clock.advance(1);
        expect(await services.claims.claimByCode({ deviceId: device.id, code: second.claim_code })).toEqual({
          ok: true,
          reason: "already_owned",
          claimId: second.claim_id,
          owner,
          codeOwner: owner,
          // Already the owner's: an attempt, but no new claim.
          events: [expect.objectContaining({ name: "roost/claim/attempt" })],
        });
        expect(await deviceRow(device.id)).toMatchObject({ owner_user_id: user.id, claimed_at: claimedAt });
        expect(await codeRow(second.claim_id)).toMatchObject({ used_at: clock.now, device_id: device.id });
      });

      it(`lets exactly one of ${RACERS} devices presenting the same code at the same time claim it`, async () => {
        const { principal, owner, user } = await newUser();
        let free: DeviceRow[] = [];
        for (let index = 0; index < RACERS; index += 1) free.push(await registerDevice(principal));
        // Round after round, a fresh code raced for by every device still unowned.
        while (free.length > 1) {
          const code = await services.claims.createCode({ owner });
          const results = await Promise.all(
            free.map((device) => services.claims.claimByCode({ deviceId: device.id, code: code.claim_code })),
          );
          const winners = free.filter((_, index) => results[index]?.ok);
          expect(winners).toHaveLength(1);
          const winner = winners[0]?.id;
          expect(results.filter((result) => !result.ok).map((result) => result.reason)).toEqual(
            Array.from({ length: free.length - 1 }, () => "used_code"),
          );
          expect(await codeRow(code.claim_id)).toMatchObject({
            device_id: winner,
            used_at: expect.any(Number),
          });
          const attempts = await services.claims.attemptsForCode(code.claim_id);
          expect(
            attempts.filter((attempt) => attempt.outcome === "claimed").map((attempt) => attempt.device_id),
          ).toEqual([winner]);
          expect(attempts.filter((attempt) => attempt.outcome === "refused")).toHaveLength(free.length - 1);
          free = free.filter((device) => device.id !== winner);
        }
        const owned = await storage.db
          .selectFrom("devices")
          .select("id")
          .where("owner_user_id", "=", user.id)
          .execute();
        expect(owned).toHaveLength(RACERS - 1);
        const spent = await storage.db
          .selectFrom("claim_codes")
          .select("id")
          .where("user_id", "=", user.id)
          .where("used_at", "is not", null)
          .execute();
        expect(spent).toHaveLength(RACERS - 1);
      });

      it("gives a device presented at the same time with two different owners' codes exactly one owner, leaving the losing code unspent", async () => {
        const { principal } = await newUser();
        const contenders = [await newUser(), await newUser()];
        for (let round = 0; round < 5; round += 1) {
          const device = await registerDevice(principal);
          const codes = await Promise.all(
            contenders.map(({ owner }) => services.claims.createCode({ owner })),
          );
          const results = await Promise.all(
            codes.map((code) => services.claims.claimByCode({ deviceId: device.id, code: code.claim_code })),
          );
          expect(results.filter((result) => result.ok)).toHaveLength(1);
          const winner = results.findIndex((result) => result.ok);
          const loser = 1 - winner;
          expect(results[winner]).toMatchObject({ reason: "claimed", owner: contenders[winner]?.owner });
          expect(results[loser]).toMatchObject({ ok: false, reason: "owned_by_other", owner: null });
          expect(await deviceRow(device.id)).toMatchObject({
            owner_user_id: contenders[winner]?.user.id,
            owner_customer_id: null,
          });
          expect(await codeRow(codes[winner]?.claim_id ?? "")).toMatchObject({
            device_id: device.id,
            used_at: expect.any(Number),
          });
          expect(await codeRow(codes[loser]?.claim_id ?? "")).toMatchObject({
            device_id: null,
            used_at: null,
          });
          expect(
            (await services.claims.attemptsForDevice(device.id)).map((attempt) => attempt.reason).sort(),
          ).toEqual(["claimed", "owned_by_other"]);
        }
      });

      it("claims many devices with many codes at the same time, each device once, each code once", async () => {
        const { principal } = await newUser();
        const owners = await Promise.all(Array.from({ length: RACERS }, () => newUser()));
        const devices: DeviceRow[] = [];
        for (let index = 0; index < RACERS; index += 1) devices.push(await registerDevice(principal));
        const codes = await Promise.all(owners.map(({ owner }) => services.claims.createCode({ owner })));
        // Every code is presented by every device, all at once.
        const presentations = codes.flatMap((code) =>
          devices.map((device) => ({ deviceId: device.id, code: code.claim_code })),
        );
        const results = await Promise.all(
          presentations.map((presentation) => services.claims.claimByCode(presentation)),
        );
        const claimed = results.filter((result) => result.reason === "claimed");
        const rows = await storage.db
          .selectFrom("devices")
          .select(["id", "owner_user_id"])
          .where(
            "id",
            "in",
            devices.map((device) => device.id),
          )
          .execute();
        const spent = await storage.db
          .selectFrom("claim_codes")
          .select(["id", "device_id"])
          .where(
            "id",
            "in",
            codes.map((code) => code.claim_id),
          )
          .where("used_at", "is not", null)
          .execute();
        // Each success spent exactly one code on exactly one device, and no code or device was used twice.
        expect(spent).toHaveLength(claimed.length);
        expect(new Set(spent.map((code) => code.device_id)).size).toBe(spent.length);
        expect(rows.filter((row) => row.owner_user_id !== null)).toHaveLength(claimed.length);
        for (const code of spent) {
          const codeOwner = owners[codes.findIndex((candidate) => candidate.claim_id === code.id)]?.user.id;
          expect(rows.find((row) => row.id === code.device_id)?.owner_user_id).toBe(codeOwner);
        }
        expect(claimed.length).toBeGreaterThan(0);
      });

      /**
       * Good and bad presentations mixed, made afresh each call: claimed, unknown code, claimed in session,
       * the first code again (spent by the first claim, in the same batch when batched), a device someone
       * else owns, claimed through the API. The owner has hooks for claim events and `spark/status`.
       */
      async function mixedPresentations() {
        const { principal, owner, user } = await newUser();
        const other = await newUser();
        const devices: DeviceRow[] = [];
        for (let index = 0; index < 6; index += 1) devices.push(await registerDevice(principal));
        const codes: Awaited<ReturnType<typeof services.claims.createCode>>[] = [];
        for (let index = 0; index < 4; index += 1) codes.push(await services.claims.createCode({ owner }));
        const hooks = await claimHooks(user.id);
        const theirs = await services.claims.createCode({ owner: other.owner });
        const device = (index: number) => devices[index]?.id ?? "";
        const code = (index: number) => codes[index]?.claim_code ?? "";
        expect(
          await services.claims.claimByCode({ deviceId: device(4), code: theirs.claim_code }),
        ).toMatchObject({ ok: true });
        const presentations = [
          { deviceId: device(0), code: code(0) },
          { deviceId: device(1), code: "B".repeat(63) },
          { deviceId: device(2), code: code(1), online: true },
          { deviceId: device(3), code: code(0) },
          { deviceId: device(4), code: code(2) },
          { deviceId: device(5), code: code(3), source: "api" as const },
        ];
        // Every ID and name that differs between two calls, and what a comparison calls it instead.
        const names = new Map<string, string>([
          [user.id, "owner"],
          [user.username, "owner-name"],
          [other.user.id, "other"],
          [other.user.username, "other-name"],
          [theirs.claim_id, "their-code"],
          ...devices.map((row, index): [string, string] => [row.id, `device-${index}`]),
          ...codes.map((row, index): [string, string] => [row.claim_id, `code-${index}`]),
          ...hooks.map((hook, index): [string, string] => [hook.row.id, `hook-${index}`]),
        ]);
        const normalize = (value: unknown) => {
          let text = JSON.stringify(value);
          for (const [id, name] of names) text = text.replaceAll(id, name);
          return JSON.parse(text) as unknown;
        };
        /** What the presentations left in the database, by name. */
        const effects = async () => {
          const ids = devices.map((row) => row.id);
          return normalize({
            devices: await storage.db
              .selectFrom("devices")
              .select(["id", "owner_user_id", "owner_customer_id", "claimed_at"])
              .where("id", "in", ids)
              .orderBy("id")
              .execute()
              .then((rows) => rows.sort((a, b) => ids.indexOf(a.id) - ids.indexOf(b.id))),
            codes: await Promise.all(
              [...codes.map((row) => row.claim_id), theirs.claim_id].map(async (id) => {
                const row = await codeRow(id);
                return { id, used_at: row.used_at, device_id: row.device_id };
              }),
            ),
            attempts: await Promise.all(
              ids.map(async (id) =>
                (await services.claims.attemptsForDevice(id)).map((attempt) => ({
                  claim_code_id: attempt.claim_code_id,
                  outcome: attempt.outcome,
                  reason: attempt.reason,
                  source: attempt.source,
                  at: attempt.at,
                })),
              ),
            ),
            deliveries: await deliveriesOf(hooks.map((hook) => hook.row.id)),
          });
        };
        return { presentations, normalize, effects, devices, codes };
      }

      it("runs the claims presented in one turn in one transaction, refusing a bad one alone, with the same results and effects as one by one", async () => {
        clock.advance(1000);
        const batched = await mixedPresentations();
        const before = services.claims.transactions;
        const results = await Promise.all(
          batched.presentations.map((presentation) => services.claims.claimByCode(presentation)),
        );
        expect(services.claims.transactions - before).toBe(1);
        expect(results.map((result) => [result.ok, result.reason])).toEqual([
          [true, "claimed"],
          [false, "unknown_code"],
          [true, "claimed"],
          [false, "used_code"],
          [false, "owned_by_other"],
          [true, "claimed"],
        ]);
        expect(results[2]?.online).toMatchObject({
          name: "spark/status",
          data: "online",
          webhooksQueued: true,
        });

        // The same presentations one by one, each in its own transaction, at the same clock.
        const oneByOne = await mixedPresentations();
        const start = services.claims.transactions;
        const alone = [];
        for (const presentation of oneByOne.presentations)
          alone.push(await services.claims.claimByCode(presentation));
        expect(services.claims.transactions - start).toBe(oneByOne.presentations.length);

        expect(batched.normalize(results)).toEqual(oneByOne.normalize(alone));
        const effects = await batched.effects();
        expect(effects).toEqual(await oneByOne.effects());
        expect(effects).toMatchObject({
          devices: [
            { owner_user_id: "owner" },
            { owner_user_id: null },
            { owner_user_id: "owner" },
            { owner_user_id: null },
            { owner_user_id: "other" },
            { owner_user_id: "owner" },
          ],
          deliveries: [
            { hook_id: "hook-0", event_name: "roost/claim/attempt" },
            { hook_id: "hook-0", event_name: "roost/device/claimed" },
            { hook_id: "hook-0", event_name: "roost/claim/attempt" },
            { hook_id: "hook-0", event_name: "roost/device/claimed" },
            { hook_id: "hook-1", event_name: "spark/status" },
            { hook_id: "hook-0", event_name: "roost/claim/attempt" },
            { hook_id: "hook-0", event_name: "roost/claim/attempt" },
            { hook_id: "hook-0", event_name: "roost/claim/attempt" },
            { hook_id: "hook-0", event_name: "roost/device/claimed" },
          ],
        });
      });

      /**
       * Runs `test` while the claim attempts of `deviceId` cannot be written (a trigger of this test's
       * database): that device's claim fails after spending its code and binding its device.
       */
      const withAttemptsRefused = async (deviceId: string, test: () => Promise<void>) => {
        const trigger =
          storage.dialect === "postgres"
            ? [
                `create function roost_test_refuse_attempt() returns trigger language plpgsql as $$
                 begin
                   if new.device_id = '${deviceId}' then raise exception 'attempt refused by the test'; end if;
                   return new;
                 end $$`,
                `create trigger roost_test_refuse_attempt before insert on claim_attempts
                 for each row execute function roost_test_refuse_attempt()`,
              ]
            : [
                `create trigger roost_test_refuse_attempt before insert on claim_attempts
                 when new.device_id = '${deviceId}'
                 begin select raise(abort, 'attempt refused by the test'); end`,
              ];
        for (const statement of trigger) await sql.raw(statement).execute(storage.db);
        try {
          await test();
        } finally {
          await sql
            .raw(
              "drop trigger roost_test_refuse_attempt" +
                (storage.dialect === "postgres" ? " on claim_attempts" : ""),
            )
            .execute(storage.db);
          if (storage.dialect === "postgres")
            await sql.raw("drop function roost_test_refuse_attempt()").execute(storage.db);
        }
      };

      /** A new user's two unowned devices and two claim codes of that user. */
      const twoDevicesAndCodes = async () => {
        const { principal, owner } = await newUser();
        const devices = [await registerDevice(principal), await registerDevice(principal)] as const;
        const codes = [
          await services.claims.createCode({ owner }),
          await services.claims.createCode({ owner }),
        ] as const;
        return { devices, codes };
      };

      it("rolls back only the work of a claim that fails in its batch, which fails alone; the others commit", async () => {
        const mixed = await mixedPresentations();
        const failing = mixed.devices[2]?.id ?? "";
        // The failing claim's savepoint must undo its spend and bind.
        await withAttemptsRefused(failing, async () => {
          const before = services.claims.transactions;
          const settled = await Promise.allSettled(
            mixed.presentations.map((presentation) => services.claims.claimByCode(presentation)),
          );
          // One run without savepoints, rolled back at the failing claim; one with a savepoint per claim.
          expect(services.claims.transactions - before).toBe(2);
          expect(settled[2]).toMatchObject({
            status: "rejected",
            reason: expect.objectContaining({
              message: expect.stringContaining("attempt refused by the test"),
            }),
          });
          expect(
            settled.map((outcome) => (outcome.status === "fulfilled" ? outcome.value.reason : "failed")),
          ).toEqual(["claimed", "unknown_code", "failed", "used_code", "owned_by_other", "claimed"]);
          expect(await deviceRow(failing)).toMatchObject({ owner_user_id: null, claimed_at: null });
          expect(await codeRow(mixed.codes[1]?.claim_id ?? "")).toMatchObject({
            used_at: null,
            device_id: null,
          });
          expect(await services.claims.attemptsForDevice(failing)).toEqual([]);
          for (const index of [0, 5])
            expect(await deviceRow(mixed.devices[index]?.id ?? "")).toMatchObject({
              owner_user_id: expect.any(String),
            });
        });
      });

      it.runIf(backend.multiNode)(
        "lets the next turn's claims commit while an earlier turn's claim transaction waits (PostgreSQL lanes)",
        async () => {
          const {
            devices: [held, free],
            codes: [heldCode, freeCode],
          } = await twoDevicesAndCodes();
          const before = services.claims.transactions;
          // Another transaction locks the held device's row: its claim's transaction waits at the bind.
          const heldClaim = await storage.db.transaction().execute(async (trx) => {
            await trx.selectFrom("devices").select("id").where("id", "=", held.id).forUpdate().execute();
            const waiting = services.claims.claimByCode({ deviceId: held.id, code: heldCode.claim_code });
            await new Promise<void>((resolve) => setImmediate(resolve));
            await new Promise<void>((resolve) => setImmediate(resolve));
            // A later turn: another lane, not behind the waiting transaction.
            expect(
              await services.claims.claimByCode({ deviceId: free.id, code: freeCode.claim_code }),
            ).toMatchObject({ ok: true, reason: "claimed" });
            return { waiting };
          });
          expect(await heldClaim.waiting).toMatchObject({ ok: true, reason: "claimed" });
          expect(services.claims.transactions - before).toBe(2);
        },
      );

      /** Waits until some backend of this database waits for a row lock (a readiness signal, not a sleep). */
      const lockWaiting = async () => {
        for (;;) {
          const { rows } = await sql<{ waiting: number }>`
            select count(*)::int as waiting from pg_stat_activity
            where datname = current_database() and wait_event_type = 'Lock'`.execute(storage.db);
          if ((rows[0]?.waiting ?? 0) > 0) return;
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      };

      it.runIf(backend.multiNode)(
        "claims both devices of a batch whose row locks cross another transaction's (PostgreSQL deadlock)",
        async () => {
          const {
            devices: [first, second],
            codes: [firstCode, secondCode],
          } = await twoDevicesAndCodes();
          const before = services.claims.transactions;
          const settled = await storage.db.transaction().execute(async (trx) => {
            // This transaction gives way in the deadlock: the batch's connection checks after the default 1 s.
            await sql`set local deadlock_timeout = '60s'`.execute(trx);
            await sql`select id from claim_codes where id = ${secondCode.claim_id} for update`.execute(trx);
            // One turn, one batch: it spends the first code, then waits for the second.
            const claims = Promise.allSettled([
              services.claims.claimByCode({ deviceId: first.id, code: firstCode.claim_code }),
              services.claims.claimByCode({ deviceId: second.id, code: secondCode.claim_code }),
            ]);
            await lockWaiting();
            // Now each waits for the other: PostgreSQL ends the batch's transaction, this one gets the row.
            await sql`select id from claim_codes where id = ${firstCode.claim_id} for update`.execute(trx);
            // In an object: an async callback returning the promise itself would wait for it before commit.
            return { claims };
          });
          expect(
            (await settled.claims).map((outcome) =>
              outcome.status === "fulfilled" ? outcome.value.reason : "failed",
            ),
          ).toEqual(["claimed", "claimed"]);
          // The deadlocked run and the run again.
          expect(services.claims.transactions - before).toBe(2);
          for (const device of [first, second])
            expect(await deviceRow(device.id)).toMatchObject({ owner_user_id: expect.any(String) });
        },
      );

      it.runIf(backend.multiNode)(
        "names a code revoked by another transaction after its batch read it as revoked, not used",
        async () => {
          const {
            devices: [failing, device],
            codes: [failingCode, code],
          } = await twoDevicesAndCodes();
          // The first claim of the batch fails after its writes, so that the batch runs again with
          // savepoints: the second claim's code is read at that run's start, still usable.
          await withAttemptsRefused(failing.id, async () => {
            const settled = await storage.db.transaction().execute(async (trx) => {
              await sql`update claim_codes set revoked_at = ${clock.now} where id = ${code.claim_id}`.execute(
                trx,
              );
              const claims = Promise.allSettled([
                services.claims.claimByCode({ deviceId: failing.id, code: failingCode.claim_code }),
                services.claims.claimByCode({ deviceId: device.id, code: code.claim_code }),
              ]);
              // The second claim's spend waits for this transaction's revocation, which then commits.
              await lockWaiting();
              return { claims };
            });
            const [, revoked] = await settled.claims;
            expect(revoked).toMatchObject({
              status: "fulfilled",
              value: { ok: false, reason: "revoked_code" },
            });
            expect(
              (await services.claims.attemptsForDevice(device.id)).map((attempt) => attempt.reason),
            ).toEqual(["revoked_code"]);
            expect(await deviceRow(device.id)).toMatchObject({ owner_user_id: null });
          });
        },
      );

      it("fails every claim of a batch whose transaction fails, none left waiting", async () => {
        await withFreshDatabase(async (fresh) => {
          const node = await openStorage(fresh.options);
          const nodeServices = createServices({ db: node.db, config });
          await node.close();
          const settled = await Promise.allSettled(
            [newDeviceId(), newDeviceId(), newDeviceId()].map((deviceId) =>
              nodeServices.claims.claimByCode({ deviceId, code: "C".repeat(63) }),
            ),
          );
          expect(settled.map((outcome) => outcome.status)).toEqual(["rejected", "rejected", "rejected"]);
          expect(nodeServices.claims.transactions).toBe(1);
        });
      });
    });

    // ---- lockout --------------------------------------------------------------------------------------

    describe("webhook queue", () => {
      it("queues a claim's webhook deliveries in the claim's transaction, and only the attempt for a refusal", async () => {
        const { principal, owner, user } = await newUser();
        const hook = await services.webhooks.create({
          owner: { kind: "user", userId: user.id },
          fields: { event: "roost/", url: "https://example.com/claims" },
          resolveDevice: () => Promise.reject(new Error("no device filter")),
        });
        const queued = () =>
          storage.db
            .selectFrom("webhook_deliveries")
            .select(["event_name", "status"])
            .where("hook_id", "=", hook.row.id)
            .orderBy("seq")
            .execute();
        const device = await registerDevice(principal);
        const code = await services.claims.createCode({ owner });
        await services.claims.claimByCode({ deviceId: device.id, code: code.claim_code });
        expect(await queued()).toEqual([
          { event_name: "roost/claim/attempt", status: "pending" },
          { event_name: "roost/device/claimed", status: "pending" },
        ]);
        // Another device presenting the spent code: refused, and only the attempt is queued.
        const other = await registerDevice(principal);
        await services.claims.claimByCode({ deviceId: other.id, code: code.claim_code });
        expect((await queued()).map((row) => row.event_name)).toEqual([
          "roost/claim/attempt",
          "roost/device/claimed",
          "roost/claim/attempt",
        ]);
      });

      it("queues a connected device's spark/status online in its claim's transaction and returns it with the new ownership", async () => {
        const { principal, owner, user } = await newUser();
        const hooks = await claimHooks(user.id);
        const device = await registerDevice(principal);
        const code = await services.claims.createCode({ owner });
        const result = await services.claims.claimByCode({
          deviceId: device.id,
          code: code.claim_code,
          online: true,
        });
        expect(result).toMatchObject({
          ok: true,
          reason: "claimed",
          device: { owner_user_id: user.id, owner_customer_id: null, product_id: null },
          online: {
            name: "spark/status",
            data: "online",
            coreid: device.id,
            ownerUserId: user.id,
            ownerCustomerId: null,
            productId: null,
            webhooksQueued: true,
          },
        });
        expect(result.events.map((event) => event.name)).toEqual([
          "roost/claim/attempt",
          "roost/device/claimed",
        ]);
        const queued = await deliveriesOf(hooks.map((hook) => hook.row.id));
        expect(queued).toEqual([
          { hook_id: hooks[0]?.row.id, event_name: "roost/claim/attempt" },
          { hook_id: hooks[0]?.row.id, event_name: "roost/device/claimed" },
          { hook_id: hooks[1]?.row.id, event_name: "spark/status" },
        ]);
        const row = await storage.db
          .selectFrom("devices")
          .selectAll()
          .where("id", "=", device.id)
          .executeTakeFirstOrThrow();
        expect(row.owner_user_id).toBe(user.id);
        expect(row.name).not.toBeNull();
        // A refused presentation returns neither.
        const refused = await services.claims.claimByCode({
          deviceId: device.id,
          code: "NOTACODE",
          online: true,
        });
        expect(refused.ok).toBe(false);
        expect(refused.online).toBeUndefined();
        expect(refused.device).toBeUndefined();
      });

      it("reads an owner's hooks once for many events, and uses a hook made, disabled or deleted at once", async () => {
        const { user } = await newUser();
        const owner = { kind: "user" as const, userId: user.id };
        const event = (n: number) => ({
          name: `tick/${n}`,
          data: String(n),
          ttl: 60,
          publishedAt: new Date(clock.now).toISOString(),
          coreid: "api",
          isPublic: false,
          ownerUserId: user.id,
          ownerCustomerId: null,
          productId: null,
        });
        const reads = services.webhooks.hookReads;
        for (let n = 0; n < 5; n++) expect(await services.webhooks.enqueue(event(n))).toBe(0);
        expect(services.webhooks.hookReads - reads).toBe(1);
        const { row } = await services.webhooks.create({
          owner,
          fields: { event: "tick", url: "https://example.com/ticks" },
          resolveDevice: () => Promise.reject(new Error("no device filter")),
        });
        expect(await services.webhooks.enqueue(event(5))).toBe(1);
        await services.webhooks.setDisabled({ owner, id: row.id, disabled: true });
        expect(await services.webhooks.enqueue(event(6))).toBe(0);
        await services.webhooks.setDisabled({ owner, id: row.id, disabled: false });
        expect(await services.webhooks.enqueue(event(7))).toBe(1);
        await services.webhooks.delete(owner, row.id);
        expect(await services.webhooks.enqueue(event(8))).toBe(0);
        // Kept for a second at most: then read again, whatever the bus said.
        const before = services.webhooks.hookReads;
        expect(await services.webhooks.enqueue(event(9))).toBe(0);
        clock.advance(1000);
        expect(await services.webhooks.enqueue(event(10))).toBe(0);
        expect(services.webhooks.hookReads - before).toBe(1);
      });

      it("leaves no delivery behind when the transaction it was queued in rolls back", async () => {
        const { principal, owner, user } = await newUser();
        await services.webhooks.create({
          owner: { kind: "user", userId: user.id },
          fields: { event: "roost/device/", url: "https://example.com/claims" },
          resolveDevice: () => Promise.reject(new Error("no device filter")),
        });
        const device = await registerDevice(principal);
        const code = await services.claims.createCode({ owner });
        const before = await storage.db.selectFrom("webhook_deliveries").select("id").execute();
        await expect(
          storage.db.transaction().execute(async (trx) => {
            await services.webhooks.enqueue(
              {
                name: "roost/device/claimed",
                data: "{}",
                ttl: 60,
                publishedAt: new Date(clock.now).toISOString(),
                coreid: device.id,
                isPublic: false,
                ownerUserId: user.id,
                ownerCustomerId: null,
                productId: null,
              },
              trx,
            );
            throw new Error("the state change failed");
          }),
        ).rejects.toThrow("the state change failed");
        expect(await storage.db.selectFrom("webhook_deliveries").select("id").execute()).toEqual(before);
        expect(code.claim_code).toHaveLength(63);
      });
    });

    describe("lockout", () => {
      it(`counts failures per IP and blocks an IP once it reaches ${LOCKOUT_FAILURES} consecutive failures`, async () => {
        const ip = unique("10.0.0.1");
        const neighbour = unique("10.0.0.2");
        for (let failure = 1; failure < LOCKOUT_FAILURES; failure += 1) {
          await services.lockout.recordFailure(ip);
          expect(await services.lockout.blockedFor(ip)).toBe(0);
        }
        await services.lockout.recordFailure(neighbour);
        await services.lockout.recordFailure(ip);
        expect(await services.lockout.blockedFor(ip)).toBe(LOCKOUT_MS);
        expect(await services.lockout.blockedFor(neighbour)).toBe(0);
        clock.advance(1000);
        expect(await services.lockout.blockedFor(ip)).toBe(LOCKOUT_MS - 1000);
      });

      it("resets the consecutive-failure count on a success", async () => {
        const ip = unique("10.0.1.1");
        for (let failure = 1; failure < LOCKOUT_FAILURES; failure += 1)
          await services.lockout.recordFailure(ip);
        await services.lockout.recordSuccess(ip);
        for (let failure = 1; failure < LOCKOUT_FAILURES; failure += 1)
          await services.lockout.recordFailure(ip);
        expect(await services.lockout.blockedFor(ip)).toBe(0);
        await services.lockout.recordFailure(ip);
        expect(await services.lockout.blockedFor(ip)).toBe(LOCKOUT_MS);
      });

      it("lifts a block when the clock passes its end, and counts afresh after it", async () => {
        const ip = unique("10.0.2.1");
        for (let failure = 0; failure < LOCKOUT_FAILURES; failure += 1)
          await services.lockout.recordFailure(ip);
        expect(await services.lockout.blockedFor(ip)).toBe(LOCKOUT_MS);
        clock.advance(LOCKOUT_MS - 1);
        expect(await services.lockout.blockedFor(ip)).toBe(1);
        clock.advance(1);
        expect(await services.lockout.blockedFor(ip)).toBe(0);
        await services.lockout.recordFailure(ip);
        expect(await services.lockout.blockedFor(ip)).toBe(0);
        const row = await storage.db
          .selectFrom("login_failures")
          .selectAll()
          .where("ip", "=", ip)
          .executeTakeFirstOrThrow();
        expect(row).toMatchObject({ failures: 1, blocked_until: null, updated_at: clock.now });
      });

      it("counts every one of many failures from one IP arriving at the same time", async () => {
        const ip = unique("10.0.3.1");
        await Promise.all(Array.from({ length: LOCKOUT_FAILURES }, () => services.lockout.recordFailure(ip)));
        expect(await services.lockout.blockedFor(ip)).toBe(LOCKOUT_MS);
        const many = unique("10.0.3.2");
        await Promise.all(Array.from({ length: RACERS }, () => services.lockout.recordFailure(many)));
        const row = await storage.db
          .selectFrom("login_failures")
          .selectAll()
          .where("ip", "=", many)
          .executeTakeFirstOrThrow();
        expect(row).toMatchObject({ failures: RACERS, blocked_until: clock.now + LOCKOUT_MS });
      });
    });
  });
}

defineStorageConformance(sqliteFileBackend);

describe.skipIf(!POSTGRES_URL)("PostgreSQL backend", () => {
  defineStorageConformance(postgresBackend(POSTGRES_URL ?? ""));
});
