import type { Kysely, Migration, MigrationProvider } from "kysely";
import { sql } from "kysely";

/** The SQL dialect a migration is written for; the only difference is how auto-increment keys are declared. */
export type Dialect = "sqlite" | "postgres";

function initial(dialect: Dialect): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("users")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("username", "text", (c) => c.notNull().unique())
        .addColumn("password_hash", "text", (c) => c.notNull())
        .addColumn("created_at", "bigint", (c) => c.notNull())
        .execute();
      let products = db.schema.createTable("products");
      products =
        dialect === "postgres"
          ? products.addColumn("id", "serial", (c) => c.primaryKey())
          : products.addColumn("id", "integer", (c) => c.primaryKey().autoIncrement());
      await products
        .addColumn("slug", "text", (c) => c.notNull().unique())
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("description", "text", (c) => c.notNull().defaultTo(""))
        .addColumn("platform_id", "integer", (c) => c.notNull())
        .addColumn("owner_user_id", "text", (c) => c.notNull())
        .addColumn("created_at", "bigint", (c) => c.notNull())
        .execute();
      await db.schema
        .createTable("product_members")
        .addColumn("product_id", "integer", (c) => c.notNull())
        .addColumn("user_id", "text", (c) => c.notNull())
        .addColumn("role", "text", (c) => c.notNull())
        .addPrimaryKeyConstraint("product_members_pk", ["product_id", "user_id"])
        .execute();
      await db.schema
        .createTable("oauth_clients")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("secret_hash", "text", (c) => c.notNull())
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("type", "text", (c) => c.notNull())
        .addColumn("redirect_uri", "text")
        .addColumn("scope", "text")
        .addColumn("product_id", "integer")
        .addColumn("owner_user_id", "text")
        .addColumn("created_at", "bigint", (c) => c.notNull())
        .execute();
      await db.schema
        .createTable("customers")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("product_id", "integer", (c) => c.notNull())
        .addColumn("email", "text", (c) => c.notNull())
        .addColumn("password_hash", "text")
        .addColumn("created_at", "bigint", (c) => c.notNull())
        .addUniqueConstraint("customers_product_email", ["product_id", "email"])
        .execute();
      for (const table of ["access_tokens", "refresh_tokens"]) {
        await db.schema
          .createTable(table)
          .addColumn("token_hash", "text", (c) => c.primaryKey())
          .addColumn("principal_kind", "text", (c) => c.notNull())
          .addColumn("user_id", "text")
          .addColumn("customer_id", "text")
          .addColumn("product_id", "integer")
          .addColumn("client_id", "text", (c) => c.notNull())
          .addColumn("expires_at", "bigint")
          .addColumn("created_at", "bigint", (c) => c.notNull())
          .execute();
        await db.schema.createIndex(`${table}_user`).on(table).column("user_id").execute();
        await db.schema.createIndex(`${table}_customer`).on(table).column("customer_id").execute();
      }
      await db.schema
        .createTable("claim_codes")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("code_hash", "text", (c) => c.notNull().unique())
        .addColumn("principal_kind", "text", (c) => c.notNull())
        .addColumn("user_id", "text")
        .addColumn("customer_id", "text")
        .addColumn("product_id", "integer")
        .addColumn("created_at", "bigint", (c) => c.notNull())
        .addColumn("expires_at", "bigint", (c) => c.notNull())
        .addColumn("used_at", "bigint")
        .addColumn("revoked_at", "bigint")
        .addColumn("device_id", "text")
        .execute();
      await db.schema
        .createTable("claim_attempts")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("claim_code_id", "text")
        .addColumn("device_id", "text", (c) => c.notNull())
        .addColumn("outcome", "text", (c) => c.notNull())
        .addColumn("reason", "text", (c) => c.notNull())
        .addColumn("source", "text", (c) => c.notNull())
        .addColumn("at", "bigint", (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex("claim_attempts_code")
        .on("claim_attempts")
        .column("claim_code_id")
        .execute();
      await db.schema.createIndex("claim_attempts_device").on("claim_attempts").column("device_id").execute();
      await db.schema
        .createTable("devices")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("public_key", "text", (c) => c.notNull())
        .addColumn("key_algorithm", "text", (c) => c.notNull())
        .addColumn("registered_by_user_id", "text")
        .addColumn("name", "text")
        .addColumn("notes", "text")
        .addColumn("owner_user_id", "text")
        .addColumn("owner_customer_id", "text")
        .addColumn("product_id", "integer")
        .addColumn("platform_id", "integer", (c) => c.notNull())
        .addColumn("quarantined", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("denied", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("development", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("online", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("last_heard", "bigint")
        .addColumn("last_handshake_at", "bigint")
        .addColumn("last_ip_address", "text")
        .addColumn("system_firmware_version", "text")
        .addColumn("firmware_version", "integer")
        .addColumn("serial_number", "text")
        .addColumn("functions", "text", (c) => c.notNull().defaultTo("[]"))
        .addColumn("variables", "text", (c) => c.notNull().defaultTo("{}"))
        .addColumn("claimed_at", "bigint")
        .addColumn("created_at", "bigint", (c) => c.notNull())
        .addColumn("updated_at", "bigint", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("devices_owner_user").on("devices").column("owner_user_id").execute();
      await db.schema
        .createIndex("devices_owner_customer")
        .on("devices")
        .column("owner_customer_id")
        .execute();
      await db.schema.createIndex("devices_product").on("devices").column("product_id").execute();
      await db.schema
        .createTable("transfers")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("device_id", "text", (c) => c.notNull())
        .addColumn("requested_by_user_id", "text")
        .addColumn("requested_by_customer_id", "text")
        .addColumn("status", "text", (c) => c.notNull())
        .addColumn("created_at", "bigint", (c) => c.notNull())
        .execute();
      await db.schema
        .createTable("login_failures")
        .addColumn("ip", "text", (c) => c.primaryKey())
        .addColumn("failures", "integer", (c) => c.notNull())
        .addColumn("blocked_until", "bigint")
        .addColumn("updated_at", "bigint", (c) => c.notNull())
        .execute();
      // Product ids are shown to people and used in URLs; start them where Particle's look familiar.
      if (dialect === "postgres") await sql`ALTER SEQUENCE products_id_seq RESTART WITH 1000`.execute(db);
      else await sql`INSERT INTO sqlite_sequence (name, seq) VALUES ('products', 999)`.execute(db);
    },
  };
}

/** Server settings (the device-protocol server key) and the log of refused device connections. */
const settingsAndConnections: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable("server_settings")
      .addColumn("name", "text", (c) => c.primaryKey())
      .addColumn("value", "text", (c) => c.notNull())
      .addColumn("updated_at", "bigint", (c) => c.notNull())
      .execute();
    await db.schema
      .createTable("device_connection_attempts")
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("device_id", "text", (c) => c.notNull())
      .addColumn("ip", "text", (c) => c.notNull())
      .addColumn("outcome", "text", (c) => c.notNull())
      .addColumn("reason", "text", (c) => c.notNull())
      .addColumn("at", "bigint", (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex("device_connection_attempts_device")
      .on("device_connection_attempts")
      .column("device_id")
      .execute();
  },
};

/** When a transfer was decided (approved, denied or cancelled). */
const transferDecisions: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable("transfers").addColumn("decided_at", "bigint").execute();
    await db.schema.createIndex("transfers_device").on("transfers").column("device_id").execute();
  },
};

/** Gateway nodes' heartbeats, and which node a device is connected to, so that a dead node's devices go offline. */
const gatewayNodes: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable("gateway_nodes")
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("last_seen", "bigint", (c) => c.notNull())
      .execute();
    await db.schema.alterTable("devices").addColumn("gateway_node", "text").execute();
  },
};

/**
 * The cluster under faults (issue 9): a per-device session epoch that fences presence writes, and the
 * shared counters behind cluster-wide limits (API rate limit windows, open event streams per IP and node).
 */
const clusterFencing: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .alterTable("devices")
      .addColumn("session_epoch", "bigint", (c) => c.notNull().defaultTo(0))
      .execute();
    await db.schema.createIndex("devices_gateway_node").on("devices").column("gateway_node").execute();
    await db.schema
      .createTable("rate_counters")
      .addColumn("key", "text", (c) => c.primaryKey())
      .addColumn("window_start", "bigint", (c) => c.notNull())
      .addColumn("count", "integer", (c) => c.notNull())
      .execute();
    await db.schema
      .createTable("stream_slots")
      .addColumn("ip", "text", (c) => c.notNull())
      .addColumn("node_id", "text", (c) => c.notNull())
      .addColumn("count", "integer", (c) => c.notNull())
      .addPrimaryKeyConstraint("stream_slots_pk", ["ip", "node_id"])
      .execute();
  },
};

/** The attempt logs are swept by age: index their time column. */
const attemptTimes: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.createIndex("claim_attempts_at").on("claim_attempts").column("at").execute();
    await db.schema
      .createIndex("device_connection_attempts_at")
      .on("device_connection_attempts")
      .column("at")
      .execute();
  },
};

/**
 * Whether a device's platform is known (reported by its Hello, or given at registration) or was assumed
 * (a key sent without one). Devices that have connected have reported theirs.
 */
const platformConfirmed: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .alterTable("devices")
      .addColumn("platform_confirmed", "integer", (c) => c.notNull().defaultTo(0))
      .execute();
    await sql`update devices set platform_confirmed = 1 where last_handshake_at is not null`.execute(db);
  },
};

/**
 * Gen 3 devices' DTLS sessions, so that a restarted node (or another node of a cluster) continues them without a
 * handshake: the device resumes its saved session and never learns the server restarted. @see issue 12
 */
const dtlsSessions: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable("dtls_sessions")
      .addColumn("device_id", "text", (c) => c.primaryKey())
      .addColumn("cid", "text")
      .addColumn("address", "text", (c) => c.notNull())
      .addColumn("port", "integer", (c) => c.notNull())
      .addColumn("state", "text", (c) => c.notNull())
      .addColumn("updated_at", "bigint", (c) => c.notNull())
      .execute();
    await db.schema.createIndex("dtls_sessions_cid").on("dtls_sessions").column("cid").execute();
  },
};

/**
 * Webhooks (issue 13): the hooks, their queued deliveries (the durable outbox: a row is written when the event
 * happens and leased by exactly one node to send), and each attempt's log line.
 */
function webhooks(dialect: Dialect): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("webhooks")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("user_id", "text")
        .addColumn("product_id", "integer")
        .addColumn("event", "text", (c) => c.notNull())
        .addColumn("url", "text", (c) => c.notNull())
        .addColumn("request_type", "text", (c) => c.notNull())
        .addColumn("device_id", "text")
        .addColumn("settings", "text", (c) => c.notNull())
        .addColumn("secret", "text", (c) => c.notNull())
        .addColumn("disabled", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("disabled_reason", "text")
        .addColumn("consecutive_failures", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("throttled_until", "bigint")
        .addColumn("created_at", "bigint", (c) => c.notNull())
        .addColumn("updated_at", "bigint", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("webhooks_user").on("webhooks").column("user_id").execute();
      await db.schema.createIndex("webhooks_product").on("webhooks").column("product_id").execute();
      let deliveries = db.schema.createTable("webhook_deliveries");
      deliveries =
        dialect === "postgres"
          ? deliveries.addColumn("seq", "bigserial", (c) => c.primaryKey())
          : deliveries.addColumn("seq", "integer", (c) => c.primaryKey().autoIncrement());
      await deliveries
        .addColumn("id", "text", (c) => c.notNull().unique())
        .addColumn("hook_id", "text", (c) => c.notNull())
        .addColumn("event", "text", (c) => c.notNull())
        .addColumn("event_name", "text", (c) => c.notNull())
        .addColumn("status", "text", (c) => c.notNull())
        .addColumn("attempts", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("next_attempt_at", "bigint", (c) => c.notNull())
        .addColumn("lease_owner", "text")
        .addColumn("lease_until", "bigint")
        .addColumn("replay_of", "text")
        .addColumn("created_at", "bigint", (c) => c.notNull())
        .addColumn("completed_at", "bigint")
        .execute();
      await db.schema
        .createIndex("webhook_deliveries_due")
        .on("webhook_deliveries")
        .columns(["status", "next_attempt_at"])
        .execute();
      // Leasing reads one hook's pending rows in order; the log reads a hook's newest rows.
      await db.schema
        .createIndex("webhook_deliveries_hook_pending")
        .on("webhook_deliveries")
        .columns(["hook_id", "status", "seq"])
        .execute();
      await db.schema
        .createIndex("webhook_deliveries_hook")
        .on("webhook_deliveries")
        .columns(["hook_id", "seq"])
        .execute();
      await db.schema
        .createTable("webhook_attempts")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("delivery_id", "text", (c) => c.notNull())
        .addColumn("hook_id", "text", (c) => c.notNull())
        .addColumn("attempt", "integer", (c) => c.notNull())
        .addColumn("at", "bigint", (c) => c.notNull())
        .addColumn("status_code", "integer")
        .addColumn("error", "text")
        .addColumn("latency_ms", "integer", (c) => c.notNull())
        .addColumn("response", "text")
        .addColumn("node", "text", (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex("webhook_attempts_hook")
        .on("webhook_attempts")
        .columns(["hook_id", "at"])
        .execute();
      await db.schema
        .createIndex("webhook_attempts_delivery")
        .on("webhook_attempts")
        .column("delivery_id")
        .execute();
    },
  };
}

/**
 * The count every gateway node makes on each heartbeat (its devices listed online, `reconcileSessions`)
 * read one table row per device through the index on `gateway_node` alone: a 31–56 ms stall of the event
 * loop every 10 s on SQLite with 19,000 devices held, 14–18 ms of it in SQLite (bench/README.md,
 * connections, third session). With `online` in the index the count reads the index only; the index serves every lookup
 * by `gateway_node` the old one did.
 */
const presenceIndex: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createIndex("devices_gateway_node_online")
      .on("devices")
      .columns(["gateway_node", "online"])
      .execute();
    await db.schema.dropIndex("devices_gateway_node").execute();
  },
};

/** The columns of `claim_codes` before 0015a, in order. */
const CLAIM_CODE_COLUMNS_0001 = `id, code_hash, principal_kind, user_id, customer_id, product_id, created_at, expires_at,
  used_at, revoked_at, device_id`;

/**
 * Claim codes found by the row ID they carry (security.ts, `newClaimCode`), not by their hash: the unique
 * index over every code's hash goes, so a new code's insert no longer writes a random page of it (with
 * each insert's random page of the old random `id` index, that was most of the insert's cost: bench/README.md,
 * api). `by_hash` marks the rows still found by their hash: preset codes (an ICCID or IMEI) and every code
 * made before this migration (the column's default); a partial unique index covers only them. SQLite cannot
 * drop the index of a column's UNIQUE constraint, so there the table is rebuilt (it holds no foreign keys,
 * and none point at it).
 */
function claimCodeLocators(dialect: Dialect): Migration {
  return {
    async up(db: Kysely<unknown>) {
      if (dialect === "postgres") {
        await sql`alter table claim_codes add column by_hash integer not null default 1`.execute(db);
        await sql`alter table claim_codes drop constraint claim_codes_code_hash_key`.execute(db);
      } else {
        await sql`create table claim_codes_0015a (id text primary key, code_hash text not null,
          principal_kind text not null, user_id text, customer_id text, product_id integer,
          created_at bigint not null, expires_at bigint not null, used_at bigint, revoked_at bigint,
          device_id text, by_hash integer not null default 1)`.execute(db);
        await sql`insert into claim_codes_0015a (${sql.raw(CLAIM_CODE_COLUMNS_0001)})
          select ${sql.raw(CLAIM_CODE_COLUMNS_0001)} from claim_codes`.execute(db);
        await sql`drop table claim_codes`.execute(db);
        await sql`alter table claim_codes_0015a rename to claim_codes`.execute(db);
      }
      await sql`create unique index claim_codes_hash on claim_codes (code_hash) where by_hash = 1`.execute(
        db,
      );
    },
  };
}

/**
 * A device's name is unique among its owner's devices: the claim that binds a device checks its new name
 * against the owner's others (claims.ts, `bind`), as a rename does. By the owner's column alone that check
 * read the table row of every device the owner has, so a claim cost more the more devices its owner had.
 * With the name in the index the check is one seek; the index still serves every lookup by owner.
 */
const ownerNameIndexes: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createIndex("devices_owner_user_name")
      .on("devices")
      .columns(["owner_user_id", "name"])
      .execute();
    await db.schema
      .createIndex("devices_owner_customer_name")
      .on("devices")
      .columns(["owner_customer_id", "name"])
      .execute();
    await db.schema.dropIndex("devices_owner_user").execute();
    await db.schema.dropIndex("devices_owner_customer").execute();
  },
};

/**
 * A product customer's pending claim codes, found by the customer: deleting a customer revokes them
 * (`AccountService.deleteCustomer`), which read every claim code of the deployment before. Partial, so that
 * the codes of users (no customer) and spent codes cost the index nothing: the claim-code insert of users,
 * the hot one, writes no more pages than before.
 */
const pendingCustomerCodes: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`create index claim_codes_pending_customer on claim_codes (customer_id)
      where customer_id is not null and used_at is null`.execute(db);
  },
};

/** Migrations live in code, in order; each runs once per database. */
export function createMigrationProvider(dialect: Dialect): MigrationProvider {
  return {
    getMigrations: () =>
      Promise.resolve({
        "0001_initial": initial(dialect),
        "0002_settings_connections": settingsAndConnections,
        "0003_transfer_decisions": transferDecisions,
        "0004_gateway_nodes": gatewayNodes,
        "0009a_cluster_fencing": clusterFencing,
        "0010a_attempt_times": attemptTimes,
        "0010b_platform_confirmed": platformConfirmed,
        "0012a_dtls_sessions": dtlsSessions,
        "0013a_webhooks": webhooks(dialect),
        "0014a_presence_index": presenceIndex,
        "0015a_claim_code_locators": claimCodeLocators(dialect),
        "0016a_owner_name_indexes": ownerNameIndexes,
        "0017a_pending_customer_codes": pendingCustomerCodes,
      }),
  };
}
