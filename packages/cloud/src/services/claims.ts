import type { Kysely, Transaction } from "kysely";
import { CompiledQuery, sql } from "kysely";

import { normalizeDeviceId } from "@roost/protocol";

import type { CloudConfig } from "../config.js";
import { AppError } from "../errors.js";
import type { EventBus } from "../events/bus.js";
import type { CloudEvent } from "../events/model.js";
import { CLAIM_ATTEMPT_EVENT, DEVICE_CLAIMED_EVENT } from "../events/model.js";
import { claimCodeRowId, hashSecret, newClaimCodeAndRowId, newClaimCodeRowId, newId } from "../security.js";
import { Batcher, dialectOf } from "../storage/batch.js";
import type { ClaimCodesTable, Database, DeviceRecord } from "../storage/schema.js";
import type { HooksRead, WebhookService } from "../webhooks/service.js";
import type { DeviceService } from "./devices.js";
import { insertManyText, prepareQuery } from "./prepared.js";
import type { Owner } from "./principal.js";
import type { RetentionService } from "./retention.js";
import type { TransferService } from "./transfers.js";

/**
 * Why a claim attempt ended as it did. Recorded with every attempt (the claim timeline of DESIGN.md).
 * @see spec/cloud-api.md §3.3–§3.5
 */
export const CLAIM_REASONS = [
  "claimed",
  "already_owned",
  "unknown_code",
  "expired_code",
  "used_code",
  "revoked_code",
  "wrong_product",
  "device_not_in_product",
  "not_product_team",
  "owned_by_other",
  "unknown_device",
  "key_mismatch",
  "device_offline",
  "rate_limited",
] as const;

/** One of {@link CLAIM_REASONS}. */
export type ClaimReason = (typeof CLAIM_REASONS)[number];

/** The outcome of presenting a claim code. */
export interface ClaimResult {
  readonly ok: boolean;
  readonly reason: ClaimReason;
  /** The claim code's id, when the code was recognised. */
  readonly claimId: string | null;
  /** The device's owner after the attempt, when it succeeded. */
  readonly owner: Owner | null;
  /** Whose code it was, when the code was recognised: that account is told about the attempt. */
  readonly codeOwner: Owner | null;
  /**
   * What to publish once committed: the attempt to the code's owner and, on a claim, `roost/device/claimed`.
   * Their webhook deliveries are already queued (in the claim's transaction).
   */
  readonly events: readonly CloudEvent[];
  /**
   * With the `online` option, on success: the device's ownership as the claim left it (the session takes it
   * without a re-read).
   */
  readonly device?: {
    readonly owner_user_id: string | null;
    readonly owner_customer_id: string | null;
    readonly product_id: number | null;
  };
  /**
   * With the `online` option, on success: the device's `spark/status online` for its new owner, its webhook
   * deliveries queued in the claim's transaction; to publish once committed, after {@link events}.
   */
  readonly online?: CloudEvent;
}

/** Where a claim code stands. @see DESIGN.md "Beyond the anchors" 1–2 */
export type ClaimState = "pending" | "claimed" | "expired" | "revoked";

/** A claim code's status and timeline, as `GET /v1/roost/claims/:claim_id` shows it to the code's owner. */
export interface ClaimStatus {
  claim_id: string;
  status: ClaimState;
  device_id: string | null;
  created_at: string;
  expires_at: string;
  claimed_at: string | null;
  attempts: { at: string; device_id: string; outcome: string; reason: string; source: string }[];
}

/** Where a claim attempt came from. */
export type ClaimSource = "gateway" | "api";

/** A new claim code as `POST /v1/device_claims` returns it, plus Roost's `claim_id`. @see spec/cloud-api.md §3.1 */
export interface ClaimCodeResponse {
  claim_code: string;
  device_ids: string[];
  claim_id: string;
}

class ClaimRefused extends Error {
  constructor(readonly reason: ClaimReason) {
    super(reason);
  }
}

/**
 * The statements of a claim by code (a device presenting its code), compiled once: a claim runs a dozen of
 * them while other devices wait on the same thread (bench claim scenario), and building each with Kysely
 * cost as much as running it.
 */
function claimStatements(db: Kysely<Database>) {
  /**
   * Binds an unowned device to its new owner; a device without a name takes `candidate` unless another
   * device of the owner has that name (then its name stays null and is generated afresh). The bound row
   * comes back (none when the device was taken meanwhile).
   */
  const bind = (column: "owner_user_id" | "owner_customer_id") =>
    prepareQuery<{ owner: string; now: number; id: string; candidate: string }, DeviceRecord>(db, (slot) =>
      db
        .updateTable("devices")
        .set({
          owner_user_id: column === "owner_user_id" ? slot("owner") : null,
          owner_customer_id: column === "owner_customer_id" ? slot("owner") : null,
          claimed_at: slot("now"),
          updated_at: slot("now"),
          name: sql<string | null>`coalesce(name, case when exists (select 1 from devices as others
            where others.name = ${slot("candidate")} and others.id <> ${slot("id")}
              and others.${sql.ref(column)} = ${slot("owner")}) then null else ${slot("candidate")} end)`,
        })
        .where("id", "=", slot("id"))
        .where("owner_user_id", "is", null)
        .where("owner_customer_id", "is", null)
        .returningAll(),
    );
  return {
    // Everything a presented code is checked against, in one round trip: the device's recent and logged
    // attempts, the code (all null when unknown) with its owner's name and its attempts, and the device's
    // ownership (null when unknown). One row whatever exists.
    presented: prepareQuery<
      { hash: string; row: string | null; device: string; since: number },
      PresentedRow
    >(db, (slot) => {
      const query = sql<PresentedRow>`select
          (select count(*) from claim_attempts where device_id = ${slot("device")}
            and at > ${slot("since")}) as device_recent_attempts,
          (select count(*) from claim_attempts where device_id = ${slot("device")}) as device_logged_attempts,
          code.id, code.code_hash, code.principal_kind, code.user_id, code.customer_id, code.product_id,
          code.created_at, code.expires_at, code.used_at, code.revoked_at, code.device_id,
          owner_user.username as owner_username, owner_customer.email as owner_email,
          (select count(*) from claim_attempts where claim_code_id = code.id
            and at > ${slot("since")}) as recent_attempts,
          (select count(*) from claim_attempts where claim_code_id = code.id) as logged_attempts,
          device.id as device_found, device.product_id as device_product_id,
          device.owner_user_id as device_owner_user_id, device.owner_customer_id as device_owner_customer_id
        from (select 1 as one) as one
        left join claim_codes as code on code.id = coalesce(
          (select id from claim_codes where id = ${slot("row")} and code_hash = ${slot("hash")}),
          (select id from claim_codes where code_hash = ${slot("hash")} and by_hash = 1))
        left join users as owner_user on owner_user.id = code.user_id
        left join customers as owner_customer on owner_customer.id = code.customer_id
        left join devices as device on device.id = ${slot("device")}`;
      return { compile: () => query.compile(db) };
    }),
    spend: prepareQuery<{ now: number; deviceId: string; id: string }, never>(db, (slot) =>
      db
        .updateTable("claim_codes")
        .set({ used_at: slot("now"), device_id: slot("deviceId") })
        .where("id", "=", slot("id"))
        .where("used_at", "is", null)
        .where("revoked_at", "is", null),
    ),
    bindToUser: bind("owner_user_id"),
    bindToCustomer: bind("owner_customer_id"),
    recordAttempt: prepareQuery<
      {
        id: string;
        claimId: string | null;
        deviceId: string;
        outcome: string;
        reason: string;
        source: string;
        at: number;
      },
      never
    >(db, (slot) =>
      db.insertInto("claim_attempts").values({
        id: slot("id"),
        claim_code_id: slot("claimId"),
        device_id: slot("deviceId"),
        outcome: slot("outcome"),
        reason: slot("reason"),
        source: slot("source"),
        at: slot("at"),
      }),
    ),
    userName: prepareQuery<{ id: string }, { username: string }>(db, (slot) =>
      db.selectFrom("users").select("username").where("id", "=", slot("id")),
    ),
    customerEmail: prepareQuery<{ id: string }, { email: string }>(db, (slot) =>
      db.selectFrom("customers").select("email").where("id", "=", slot("id")),
    ),
  };
}

/**
 * PostgreSQL's spend + bind + record of claims in one statement (see ClaimService #spendBindRecord, and
 * #runTogether for a batch's): the rows travel as one JSON parameter, `[{ i: position, now, d: device, c: code
 * row ID, ou / oc: the new owner, n: name candidate, b: bind (false when the device is already the owner's),
 * a: attempt ID, r: reason, s: source, at: attempt time }]`, and each comes back with its position, whether
 * its code was spent and its device bound, and the device's name. Each row's parts depend on the one before
 * (data-modifying CTEs, one snapshot): the code is spent only if unused and unrevoked, the device bound only
 * if its code was spent and it is still unowned, the attempt recorded only if both happened; a row whose
 * code was spent meanwhile writes nothing. The name rule is the bind statement's: a device without a name
 * takes the candidate unless another device of the same owner has it. Devices and codes are distinct within
 * a batch (the Batcher's rule; a repeated code is left to run alone), and the batch's name candidates are
 * distinct: no row's effect depends on another's.
 */
const SPEND_BIND_RECORD_ALL_POSTGRES = `with v as (
    select * from jsonb_to_recordset($1::jsonb) as v(i int, now bigint, d text, c text, ou text, oc text,
      n text, b boolean, a text, r text, s text, at bigint)
  ), spent as (
    update claim_codes as code set used_at = v.now, device_id = v.d
    from v where code.id = v.c and code.used_at is null and code.revoked_at is null
    returning v.i
  ), bound as (
    update devices as device set owner_user_id = v.ou, owner_customer_id = v.oc, claimed_at = v.now,
      updated_at = v.now,
      name = coalesce(device.name, case when exists (select 1 from devices as others
        where others.name = v.n and others.id <> v.d
          and (others.owner_user_id = v.ou or others.owner_customer_id = v.oc)) then null else v.n end)
    from v where device.id = v.d and device.owner_user_id is null and device.owner_customer_id is null and v.b
      and v.i in (select i from spent)
    returning v.i, device.name
  ), recorded as (
    insert into claim_attempts (id, claim_code_id, device_id, outcome, reason, source, at)
    select v.a, v.c, v.d, 'claimed', v.r, v.s, v.at from v
    where v.i in (select i from spent) and (not v.b or v.i in (select i from bound))
    returning id
  )
  select v.i, v.i in (select i from spent) as spent, v.i in (select i from bound) as bound,
    (select bound.name from bound where bound.i = v.i) as name
  from v`;

/**
 * What a presented code is checked against: the code's columns (null when unknown) with its owner's name
 * and attempt counts, the device's attempt counts and ownership (`device_found` null when unknown).
 * Counts are numbers (PostgreSQL's `bigint` is read as a number by the pool).
 */
type PresentedRow = { [K in keyof ClaimCodesTable]: ClaimCodesTable[K] | null } & {
  owner_username: string | null;
  owner_email: string | null;
  recent_attempts: number | string;
  logged_attempts: number | string;
  device_recent_attempts: number | string;
  device_logged_attempts: number | string;
  device_found: string | null;
  device_product_id: number | null;
  device_owner_user_id: string | null;
  device_owner_customer_id: string | null;
};

/**
 * A presented code's row in a batch (see PRESENT_ALL): by the row ID the code carries if its hash matches
 * (security.ts, `newClaimCode`), else by the code's hash among the rows found that way (`by_hash`: preset codes,
 * codes made before migration 0015a). COALESCE reads the second only when the first finds nothing.
 */
const CODE_ROW_BY_ID = `(select id from claim_codes where id = v.c and code_hash = v.h)`;
const CODE_ROW_BY_HASH = `(select id from claim_codes where code_hash = v.h and by_hash = 1)`;

/**
 * The `presented` statement of claimByCode for a batch of claims (see ClaimService #presentAll): the rows
 * travel as one JSON parameter, `[{ i: position, h: code hash, c: the row ID the code carries or null,
 * d: device ID, s: since }]`, and each comes back with its position as `i`. One row per claim (code hashes
 * and device IDs are unique).
 */
const PRESENT_ALL = (() => {
  const select = `select v.i,
      (select count(*) from claim_attempts where device_id = v.d and at > v.s) as device_recent_attempts,
      (select count(*) from claim_attempts where device_id = v.d) as device_logged_attempts,
      code.id, code.code_hash, code.principal_kind, code.user_id, code.customer_id, code.product_id,
      code.created_at, code.expires_at, code.used_at, code.revoked_at, code.device_id,
      owner_user.username as owner_username, owner_customer.email as owner_email,
      (select count(*) from claim_attempts where claim_code_id = code.id and at > v.s) as recent_attempts,
      (select count(*) from claim_attempts where claim_code_id = code.id) as logged_attempts,
      device.id as device_found, device.product_id as device_product_id,
      device.owner_user_id as device_owner_user_id, device.owner_customer_id as device_owner_customer_id`;
  const joins = `left join claim_codes as code on code.id = coalesce(${CODE_ROW_BY_ID}, ${CODE_ROW_BY_HASH})
    left join users as owner_user on owner_user.id = code.user_id
    left join customers as owner_customer on owner_customer.id = code.customer_id
    left join devices as device on device.id = v.d`;
  return {
    sqlite: `${select}
      from (select value ->> '$.i' as i, value ->> '$.h' as h, value ->> '$.c' as c, value ->> '$.d' as d,
          value ->> '$.s' as s
        from json_each(?)) as v
      ${joins}`,
    postgres: `${select}
      from jsonb_to_recordset($1::jsonb) as v(i integer, h text, c text, d text, s bigint)
      ${joins}`,
  };
})();

function codeOwner(code: ClaimCodesTable): Owner | undefined {
  if (code.principal_kind === "user" && code.user_id) return { kind: "user", userId: code.user_id };
  if (code.principal_kind === "customer" && code.customer_id && code.product_id !== null) {
    return { kind: "customer", customerId: code.customer_id, productId: code.product_id };
  }
  return undefined;
}

function sameOwnerAs(a: Owner, b: Owner): boolean {
  return a.kind === "user"
    ? b.kind === "user" && a.userId === b.userId
    : b.kind === "customer" && a.customerId === b.customerId;
}

async function isTeamMember(
  db: Kysely<Database>,
  options: { userId: string; productId: number },
): Promise<boolean> {
  const row = await db
    .selectFrom("product_members")
    .select("user_id")
    .where("product_id", "=", options.productId)
    .where("user_id", "=", options.userId)
    .executeTakeFirst();
  return row !== undefined;
}

function sameOwner(
  a: Owner,
  device: { owner_user_id: string | null; owner_customer_id: string | null },
): boolean {
  return a.kind === "user" ? device.owner_user_id === a.userId : device.owner_customer_id === a.customerId;
}

/** A claim by code waiting for its turn's transaction; `id` is the device's (normalized) ID. */
interface ClaimRequest {
  readonly id: string;
  /** The presented code's hash. */
  readonly hash: string;
  /** The claim code row ID the presented code carries, if it can carry one (security.ts, `claimCodeRowId`). */
  readonly row: string | null;
  readonly source: ClaimSource;
  readonly online: boolean;
  /** When the code was presented: what expiry and the rate limit are judged against. */
  readonly now: number;
}

/** One claim's answer from its batch: its result, or the error that failed it alone. */
type ClaimOutcome = { readonly result: ClaimResult } | { readonly error: unknown };

/**
 * One claim in its batch's transaction: the request, what the batch read for it beforehand (`presented`,
 * undefined when it reads for itself), the owners' hooks read by the batch so far, and what it learnt.
 */
interface BatchClaim {
  readonly request: ClaimRequest;
  readonly presented: PresentedRow | undefined;
  readonly hooks: HooksRead;
  readonly seen: Seen;
}

/** A claim that passed its checks (see ClaimService #check): what its writes and its result need. */
interface CheckedClaim {
  readonly code: PresentedRow & ClaimCodesTable;
  readonly owner: Owner;
  readonly device: {
    readonly product_id: number | null;
    readonly owner_user_id: string | null;
    readonly owner_customer_id: string | null;
  };
  readonly alreadyMine: boolean;
  readonly reason: ClaimReason;
  readonly attempt: {
    claimId: string;
    deviceId: string;
    outcome: "claimed";
    reason: ClaimReason;
    source: ClaimSource;
  };
  readonly logged: { readonly device: number; readonly code: number };
}

/** What a claim learnt of its code before it was refused (a refusal tells the code's owner). */
interface Seen {
  claimId: string | null;
  recognised: Owner | null;
  /** Set before the claim's first write: a refusal after it must undo the claim's work. */
  wrote: boolean;
}

/**
 * A batch run without savepoints met a claim whose work must be undone alone (a refusal after its first
 * write, or an error): the batch is rolled back and run again with a savepoint per claim.
 */
class NeedsSavepoints extends Error {}

/**
 * Claims presented in one turn share a transaction (see ClaimService #claimAll); when a claim's work may need
 * undoing alone, each runs in this savepoint, released before the next one opens (so one name serves them
 * all). Same SQL on SQLite and PostgreSQL.
 */
const SAVEPOINT = CompiledQuery.raw("savepoint roost_claim");
const ROLLBACK_TO_SAVEPOINT = CompiledQuery.raw("rollback to savepoint roost_claim");
const RELEASE_SAVEPOINT = CompiledQuery.raw("release savepoint roost_claim");
/**
 * PostgreSQL: the previous claim's savepoint released and the next one's set in one round trip (a query
 * without parameters may hold two statements there; better-sqlite3 takes one statement at a time).
 */
const NEXT_SAVEPOINT_POSTGRES = CompiledQuery.raw("release savepoint roost_claim; savepoint roost_claim");

/**
 * Claims per transaction at most: a claim waits for every claim of its batch to commit, and a batch holds
 * SQLite's one connection (PostgreSQL: one of the pool) for as long as it runs.
 */
const CLAIM_BATCH_LIMIT = 200;

/**
 * PostgreSQL: claim transactions that may run at once (of the pool's 10 connections). Each turn's claims
 * still share one transaction; the next turn's need not wait for it to commit, as claims did not wait for
 * each other before they were batched. SQLite runs one transaction at a time: one lane.
 */
const CLAIM_LANES_POSTGRES = 4;

/** Every column of a claim code row, in the order the group insert sends them. */
const CLAIM_CODE_COLUMNS = [
  "id",
  "code_hash",
  "principal_kind",
  "user_id",
  "customer_id",
  "product_id",
  "created_at",
  "expires_at",
  "used_at",
  "revoked_at",
  "device_id",
  "by_hash",
] as const satisfies readonly (keyof ClaimCodesTable)[];

/**
 * PostgreSQL: the device IDs of the owners of a group of fresh claim codes, read by the statement that
 * inserts them (`with inserted as (insert …) select …`), in the order of `DeviceService.ownedIds`. Its two
 * parameters, numbered after the insert's, are the users' and the customers' IDs.
 */
const ownedIdsOfGroup = (first: number) =>
  `select "owner_user_id" as "user_id", "owner_customer_id" as "customer_id", "id" from "devices" ` +
  `where "owner_user_id" = any($${first}::text[]) or "owner_customer_id" = any($${first + 1}::text[]) ` +
  `order by "last_handshake_at" desc nulls last, "id"`;

/** The key of an owner's device IDs in one turn's reads (a user's and a customer's IDs never meet). */
const userKey = (userId: string) => `u:${userId}`;
const customerKey = (customerId: string) => `c:${customerId}`;
const ownerKey = (owner: Owner) =>
  owner.kind === "user" ? userKey(owner.userId) : customerKey(owner.customerId);

/**
 * Claim codes and claiming. `claimByCode` is the one transaction both the device gateway and tests use:
 * it checks the code, binds the device and spends the code, or changes nothing and records why not.
 */
export class ClaimService {
  readonly #db: Kysely<Database>;
  readonly #config: CloudConfig;
  readonly #devices: DeviceService;
  readonly #transfers: TransferService;
  readonly #webhooks: WebhookService | undefined;
  readonly #bus: EventBus | undefined;
  readonly #retention: RetentionService;
  readonly #statements: ReturnType<typeof claimStatements>;
  readonly #postgres: boolean;
  readonly #insertCodes: ReturnType<typeof insertManyText<"claim_codes", keyof ClaimCodesTable>>;
  /** Owners whose device IDs are asked for in this turn of the event loop, with the read that answers. */
  #idReads = new Map<string, Promise<string[]>>();
  /**
   * Fresh (random) claim codes asked for in the same turn of the event loop, inserted in one statement: one
   * commit and one WAL append for all of them (group commit; bench api scenario). A random code or id
   * colliding with a stored one (2^-378, 2^-122) would fail the whole group with a unique violation, which
   * each caller reports as the usual 409 "try again". At most 200 rows (2,400 parameters) per statement,
   * within both databases' limits. On PostgreSQL the same statement reads each code's owner's device IDs
   * (the answer's `device_ids`): one round trip for both. On SQLite the insert answers nothing and the IDs
   * are read beside it (#ownedIdsThisTurn).
   */
  readonly #freshCodes: Batcher<ClaimCodesTable, string[] | undefined>;
  /**
   * Claims by code presented in the same turn of the event loop, run in one transaction (see
   * {@link #claimAll}): 200 devices claiming at once commit a few times instead of 200 times, one
   * after another (SQLite runs one transaction at a time). A device presenting twice in one turn waits for
   * the next transaction of its lane with its second claim (the Batcher's rule); the effect is the same as
   * in order. On PostgreSQL a few lanes run at once (see CLAIM_LANES_POSTGRES).
   */
  readonly #lanes: Batcher<ClaimRequest, ClaimOutcome>[];
  readonly #firstLane: Batcher<ClaimRequest, ClaimOutcome>;
  /** The lane of the claims presented in this turn (chosen by the turn's first claim). */
  #lane: Batcher<ClaimRequest, ClaimOutcome> | undefined;
  #nextLane = 0;
  #transactions = 0;

  constructor(options: {
    db: Kysely<Database>;
    config: CloudConfig;
    devices: DeviceService;
    transfers: TransferService;
    /** Where claim events' webhook deliveries are queued, in the claim's transaction. */
    webhooks?: WebhookService;
    /** Where `claimById` publishes `roost/device/claimed`. */
    bus?: EventBus;
    retention: RetentionService;
  }) {
    this.#db = options.db;
    this.#config = options.config;
    this.#devices = options.devices;
    this.#transfers = options.transfers;
    this.#webhooks = options.webhooks;
    this.#bus = options.bus;
    this.#retention = options.retention;
    this.#statements = claimStatements(options.db);
    this.#postgres = dialectOf(options.db) === "postgres";
    this.#insertCodes = insertManyText(options.db, "claim_codes", CLAIM_CODE_COLUMNS);
    this.#freshCodes = this.#postgres
      ? new Batcher((rows) => this.#insertCodesReadingOwners(rows), 200)
      : new Batcher(async (rows) => {
          await this.#db.executeQuery(this.#insertCodes(rows));
          return rows.map(() => undefined);
        }, 200);
    const lane = () =>
      new Batcher<ClaimRequest, ClaimOutcome>((requests) => this.#claimAll(requests), CLAIM_BATCH_LIMIT);
    this.#firstLane = lane();
    this.#lanes = [
      this.#firstLane,
      ...Array.from({ length: this.#postgres ? CLAIM_LANES_POSTGRES - 1 : 0 }, lane),
    ];
  }

  /** An event to an owner (and its product) about a device, stamped now. */
  #ownerEvent(options: {
    name: string;
    deviceId: string;
    owner: Owner;
    data: Record<string, unknown>;
  }): CloudEvent {
    const { owner } = options;
    return {
      name: options.name,
      data: JSON.stringify(options.data),
      ttl: 60,
      publishedAt: new Date(this.#config.clock()).toISOString(),
      coreid: options.deviceId,
      isPublic: false,
      ownerUserId: owner.kind === "user" ? owner.userId : null,
      ownerCustomerId: owner.kind === "customer" ? owner.customerId : null,
      productId: owner.kind === "customer" ? owner.productId : null,
    };
  }

  /**
   * Queues the events' webhook deliveries in `trx` and returns them marked so, for publishing after the
   * commit. @see docs/webhooks.md "Claim lifecycle events"
   */
  async #queue(trx: Kysely<Database>, events: CloudEvent[], hooks?: HooksRead): Promise<CloudEvent[]> {
    if (!this.#webhooks) return events;
    await this.#webhooks.enqueueAll(events, trx, hooks);
    return events.map((event) => ({ ...event, webhooksQueued: true }));
  }

  /** Who an owner is, as claim events name it (the product backend knows its customers by e-mail). */
  async describeOwner(owner: Owner, db: Kysely<Database> = this.#db): Promise<Record<string, unknown>> {
    if (owner.kind === "user") {
      const user = (await this.#statements.userName({ id: owner.userId }, db)).rows[0];
      return { kind: "user", user_id: owner.userId, username: user?.username ?? null };
    }
    const customer = (await this.#statements.customerEmail({ id: owner.customerId }, db)).rows[0];
    return {
      kind: "customer",
      customer_id: owner.customerId,
      email: customer?.email ?? null,
      product_id: owner.productId,
    };
  }

  /**
   * Creates a claim code for a user or a product customer. A cellular `iccid` (or `imei`) given by the
   * caller is used as the code itself. @see spec/cloud-api.md §3.1, §3.2
   */
  async createCode(options: { owner: Owner; presetCode?: string | undefined }): Promise<ClaimCodeResponse> {
    const { owner } = options;
    const now = this.#config.clock();
    const { id, code } =
      options.presetCode === undefined
        ? newClaimCodeAndRowId(now)
        : { id: newClaimCodeRowId(now), code: options.presetCode };
    if (options.presetCode !== undefined) {
      // An ICCID is printed on the SIM card: a pending code for it must not be taken over by someone else.
      const pending = await this.#db
        .selectFrom("claim_codes")
        .selectAll()
        .where("code_hash", "=", hashSecret(code))
        .where("by_hash", "=", 1)
        .where("used_at", "is", null)
        .where("revoked_at", "is", null)
        .where("expires_at", ">", now)
        .executeTakeFirst();
      const pendingOwner = pending && codeOwner(pending);
      if (pendingOwner && !sameOwnerAs(pendingOwner, owner))
        throw new AppError("CONFLICT", "A claim code for this ICCID is already pending for another account");
    }
    const row = {
      id,
      code_hash: hashSecret(code),
      principal_kind: owner.kind,
      user_id: owner.kind === "user" ? owner.userId : null,
      customer_id: owner.kind === "customer" ? owner.customerId : null,
      product_id: owner.kind === "customer" ? owner.productId : null,
      created_at: now,
      expires_at: now + this.#config.claimCodeTtlSeconds * 1000,
      used_at: null,
      revoked_at: null,
      device_id: null,
      by_hash: options.presetCode === undefined ? 0 : 1,
    };
    if (options.presetCode === undefined) {
      if (this.#postgres) {
        const deviceIds = (await this.#freshCodes.add(row)) ?? [];
        return { claim_code: code, device_ids: deviceIds, claim_id: id };
      }
      // The owner's device IDs do not depend on the new code: read them while it is inserted.
      const [deviceIds] = await Promise.all([this.#ownedIdsThisTurn(owner), this.#freshCodes.add(row)]);
      return { claim_code: code, device_ids: deviceIds, claim_id: id };
    }
    await this.#db
      .insertInto("claim_codes")
      .values(row)
      // A preset code (an ICCID) may be asked for again: the newest request wins. The conflict target is the
      // partial index, named by its own predicate as a literal (a parameter would not match it).
      .onConflict((oc) =>
        oc.column("code_hash").where("by_hash", "=", sql.lit(1)).doUpdateSet({
          id,
          created_at: row.created_at,
          expires_at: row.expires_at,
          used_at: null,
          revoked_at: null,
          device_id: null,
          user_id: row.user_id,
          customer_id: row.customer_id,
          product_id: row.product_id,
          principal_kind: owner.kind,
        }),
      )
      .execute();
    return { claim_code: code, device_ids: await this.#devices.ownedIds(owner), claim_id: id };
  }

  /**
   * PostgreSQL: inserts a group of fresh codes and reads their owners' device IDs in one statement (see
   * ownedIdsOfGroup), answering each code with a copy of its owner's IDs.
   */
  async #insertCodesReadingOwners(rows: readonly ClaimCodesTable[]): Promise<string[][]> {
    const insert = this.#insertCodes(rows);
    const users = new Set<string>();
    const customers = new Set<string>();
    for (const row of rows) {
      if (row.user_id !== null) users.add(row.user_id);
      if (row.customer_id !== null) customers.add(row.customer_id);
    }
    const { rows: devices } = await this.#db.executeQuery<{
      user_id: string | null;
      customer_id: string | null;
      id: string;
    }>(
      CompiledQuery.raw(
        `with "inserted" as (${insert.sql}) ${ownedIdsOfGroup(insert.parameters.length + 1)}`,
        [...insert.parameters, [...users], [...customers]],
      ),
    );
    const ids = new Map<string, string[]>();
    const add = (key: string, id: string) => {
      const list = ids.get(key);
      if (list) list.push(id);
      else ids.set(key, [id]);
    };
    for (const device of devices) {
      if (device.user_id !== null && users.has(device.user_id)) add(userKey(device.user_id), device.id);
      if (device.customer_id !== null && customers.has(device.customer_id))
        add(customerKey(device.customer_id), device.id);
    }
    return rows.map((row) => [
      ...(ids.get(row.user_id !== null ? userKey(row.user_id) : customerKey(row.customer_id ?? "")) ?? []),
    ]);
  }

  /**
   * The owner's device IDs, read once for every claim-code request of the same owner that arrived in this
   * turn of the event loop: the read starts after all of them arrived (at the end of the turn), so each
   * sees the devices as they were after its request came in.
   */
  #ownedIdsThisTurn(owner: Owner): Promise<string[]> {
    const key = ownerKey(owner);
    let read = this.#idReads.get(key);
    if (!read) {
      if (this.#idReads.size === 0) setImmediate(() => (this.#idReads = new Map()));
      read = new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.#devices.ownedIds(owner));
      this.#idReads.set(key, read);
    }
    return read.then((ids) => [...ids]);
  }

  /**
   * A device (already authenticated by its key) presents a claim code. In one transaction: the code must
   * exist, be unexpired, unused and unrevoked; a product code needs the device in that product; the device
   * must be unowned or already the code owner's. Then the device is bound and the code spent. `online`: the
   * device is connected and presents the code in its session; its `spark/status online` for the new owner
   * is queued for webhooks in the same transaction and returned as `online` (the gateway then publishes it
   * without another round trip to the database).
   * @see spec/cloud-api.md §3.3–§3.5, DESIGN.md security rules
   */
  async claimByCode(options: {
    deviceId: string;
    code: string;
    source?: ClaimSource;
    online?: boolean;
  }): Promise<ClaimResult> {
    const deviceId = normalizeDeviceId(options.deviceId);
    const outcome = await this.#laneOfThisTurn().add({
      id: deviceId,
      hash: hashSecret(options.code),
      row: claimCodeRowId(options.code) ?? null,
      source: options.source ?? "gateway",
      online: options.online === true,
      now: this.#config.clock(),
    });
    if ("error" in outcome) throw outcome.error;
    return outcome.result;
  }

  /**
   * Claim transactions begun so far (each holds every claim of one turn, or a second time with savepoints;
   * tests count them).
   */
  get transactions(): number {
    return this.#transactions;
  }

  /**
   * Where this turn's claims queue: the lane its first claim found idle (else the next in turn), the same
   * for every claim of the turn, so that they share a transaction.
   */
  #laneOfThisTurn(): Batcher<ClaimRequest, ClaimOutcome> {
    if (this.#lane) return this.#lane;
    const next = this.#nextLane % this.#lanes.length;
    this.#nextLane += 1;
    const lane = this.#lanes.find((candidate) => candidate.idle) ?? this.#lanes[next] ?? this.#firstLane;
    this.#lane = lane;
    setImmediate(() => (this.#lane = undefined));
    return lane;
  }

  /**
   * The claims presented in one turn of the event loop, in one transaction, in arrival order, so that each
   * sees the ones before it exactly as if they had committed. Each claim's work must be undone alone when it
   * is refused after its first write or fails (a race with another transaction, an error): then the claim
   * is rolled back to a savepoint of its own (and a refusal records the attempt, as a refusal did in a
   * transaction of its own), and an error fails that claim alone. Such claims are rare (a refusal found by
   * the checks before any write needs no undoing), so a batch first runs without savepoints, one round trip
   * less per claim on PostgreSQL; if it meets one, it is rolled back and run again with a savepoint per
   * claim. An error outside any claim (begin, commit, a savepoint) fails every claim of the batch. Results
   * are answered after the commit, so that nobody is told of a claim that did not commit.
   */
  async #claimAll(requests: readonly ClaimRequest[]): Promise<ClaimOutcome[]> {
    try {
      return await this.#runBatch(requests, false);
    } catch (error) {
      if (!(error instanceof NeedsSavepoints)) throw error;
      return this.#runBatch(requests, true);
    }
  }

  /** One run of a batch (see {@link #claimAll}), with a savepoint per claim or with none. */
  async #runBatch(requests: readonly ClaimRequest[], savepoints: boolean): Promise<ClaimOutcome[]> {
    this.#transactions += 1;
    return this.#db.transaction().execute(async (trx) => {
      const presented = await this.#presentAll(trx, requests);
      if (this.#postgres && !savepoints && requests.length > 1)
        return this.#runTogether(trx, requests, presented);
      const hooks: HooksRead = new Map();
      const outcomes: ClaimOutcome[] = [];
      for (const [index, request] of requests.entries()) {
        // On PostgreSQL the previous claim's savepoint is released with the next one's set; the commit
        // releases the last.
        if (savepoints)
          await trx.executeQuery(index > 0 && this.#postgres ? NEXT_SAVEPOINT_POSTGRES : SAVEPOINT);
        const claim: BatchClaim = {
          request,
          presented: presented.get(index),
          hooks,
          seen: { claimId: null, recognised: null, wrote: false },
        };
        let outcome: ClaimOutcome;
        try {
          outcome = { result: await this.#claimIn(trx, claim) };
        } catch (error) {
          const refused = error instanceof ClaimRefused;
          if (!savepoints && (claim.seen.wrote || !refused)) throw new NeedsSavepoints();
          if (savepoints) await trx.executeQuery(ROLLBACK_TO_SAVEPOINT);
          if (refused) {
            try {
              outcome = { result: await this.#refusedIn(trx, claim, error.reason) };
            } catch (recordError) {
              if (!savepoints) throw new NeedsSavepoints();
              await trx.executeQuery(ROLLBACK_TO_SAVEPOINT);
              outcome = { error: recordError };
            }
          } else outcome = { error };
        }
        if (savepoints && !this.#postgres) await trx.executeQuery(RELEASE_SAVEPOINT);
        outcomes.push(outcome);
      }
      return outcomes;
    });
  }

  /**
   * PostgreSQL, a batch run without savepoints: every claim is checked first (nothing written), then the
   * checked claims' writes go in one statement ({@link SPEND_BIND_RECORD_ALL_POSTGRES}: one round trip
   * instead of one per claim, each a wait behind the storm's other statements), then each claim's refusal or
   * result follows in batch order. A claim whose code an earlier claim of the batch presented too runs on its
   * own after the statement, as in a batch of claims one by one (it must see that claim's spend). A claim
   * whose code was spent meanwhile wrote nothing and is refused; one whose bind lost to another transaction
   * after its spend must be undone alone: the batch runs again with savepoints, as for any unexpected error.
   */
  async #runTogether(
    trx: Transaction<Database>,
    requests: readonly ClaimRequest[],
    presented: Map<number, PresentedRow>,
  ): Promise<ClaimOutcome[]> {
    const hooks: HooksRead = new Map();
    type Step =
      | { readonly claim: BatchClaim; readonly checked: CheckedClaim; readonly row: number }
      | { readonly claim: BatchClaim; readonly refused: ClaimReason }
      | { readonly claim: BatchClaim; readonly alone: true };
    try {
      const steps: Step[] = [];
      const rows: Record<string, unknown>[] = [];
      const names = new Set<string>();
      for (const [index, request] of requests.entries()) {
        const claim: BatchClaim = {
          request,
          presented: presented.get(index),
          hooks,
          seen: { claimId: null, recognised: null, wrote: false },
        };
        if (claim.presented === undefined) {
          steps.push({ claim, alone: true });
          continue;
        }
        let checked: CheckedClaim;
        try {
          checked = await this.#check(trx, claim);
        } catch (error) {
          if (!(error instanceof ClaimRefused)) throw error;
          steps.push({ claim, refused: error.reason });
          continue;
        }
        // One statement sees no other row's new name: the batch's candidates are drawn distinct.
        let name = this.#devices.nameCandidate();
        for (let tries = 0; names.has(name) && tries < 20; tries++) name = this.#devices.nameCandidate();
        names.add(name);
        steps.push({ claim, checked, row: rows.length });
        rows.push(
          this.#spendRow({
            index: rows.length,
            now: request.now,
            deviceId: request.id,
            owner: checked.owner,
            codeId: checked.code.id,
            name,
            bind: !checked.alreadyMine,
            reason: checked.reason,
            source: request.source,
          }),
        );
      }
      const written = await this.#spendBindRecordAll(trx, rows);
      const outcomes: ClaimOutcome[] = [];
      for (const step of steps) {
        const { claim } = step;
        if ("alone" in step) {
          outcomes.push({ result: await this.#claimAlone(trx, claim) });
        } else if ("refused" in step) {
          outcomes.push({ result: await this.#refusedIn(trx, claim, step.refused) });
        } else {
          const { checked } = step;
          const done = written[step.row];
          if (!done?.spent) {
            const reason = await this.#unspentReason(trx, checked.code.id, claim.request.id);
            outcomes.push({ result: await this.#refusedIn(trx, claim, reason) });
            continue;
          }
          claim.seen.wrote = true;
          if (!checked.alreadyMine) {
            if (!done.bound) throw new NeedsSavepoints();
            if (done.name === null) await this.#nameAfresh(trx, claim.request.id);
          }
          await this.#capLogs(trx, checked.attempt, checked.logged);
          outcomes.push({ result: await this.#finish(trx, claim, checked) });
        }
      }
      return outcomes;
    } catch (error) {
      throw error instanceof NeedsSavepoints ? error : new NeedsSavepoints();
    }
  }

  /** One claim of a batch run without savepoints, on its own (see {@link #runTogether}). */
  async #claimAlone(trx: Transaction<Database>, claim: BatchClaim): Promise<ClaimResult> {
    try {
      return await this.#claimIn(trx, claim);
    } catch (error) {
      if (claim.seen.wrote || !(error instanceof ClaimRefused)) throw new NeedsSavepoints();
      return this.#refusedIn(trx, claim, error.reason);
    }
  }

  /**
   * What each claim of a batch presents (see the `presented` statement), read for the whole batch in one
   * statement at its start, by position in the batch. A claim whose code an earlier claim of the batch
   * presented too is left out: the earlier one may change what it finds, so it reads for itself in its turn.
   * The batch's devices are distinct (the Batcher's rule), and no claim changes another device's row, its
   * attempts, or anyone's name. On PostgreSQL another transaction may commit between this read and a
   * claim's turn, as between a claim's read and its writes before: the conditional spend and bind decide.
   */
  async #presentAll(
    trx: Transaction<Database>,
    requests: readonly ClaimRequest[],
  ): Promise<Map<number, PresentedRow>> {
    const window = this.#config.retention.claimPresentationWindowMs;
    const hashes = new Set<string>();
    const rows: { i: number; h: string; c: string | null; d: string; s: number }[] = [];
    for (const [index, request] of requests.entries()) {
      if (hashes.has(request.hash)) continue;
      hashes.add(request.hash);
      rows.push({ i: index, h: request.hash, c: request.row, d: request.id, s: request.now - window });
    }
    const result = await trx.executeQuery<PresentedRow & { i: number | string }>(
      CompiledQuery.raw(this.#postgres ? PRESENT_ALL.postgres : PRESENT_ALL.sqlite, [JSON.stringify(rows)]),
    );
    return new Map(result.rows.map((row) => [Number(row.i), row]));
  }

  /**
   * One claim by code, in the batch's transaction (see {@link claimByCode}); refuses by throwing
   * {@link ClaimRefused}, having noted in `seen` the code's id and owner once it recognised the code.
   */
  async #claimIn(trx: Transaction<Database>, claim: BatchClaim): Promise<ClaimResult> {
    const checked = await this.#check(trx, claim);
    await this.#write(trx, claim, checked);
    return this.#finish(trx, claim, checked);
  }

  /**
   * What a claim would do, from its code and its device as read, or {@link ClaimRefused}; writes nothing (but
   * may read the code when the batch did not, and the product's team).
   */
  async #check(trx: Transaction<Database>, claim: BatchClaim): Promise<CheckedClaim> {
    const { request, seen } = claim;
    const { id: deviceId, source, now } = request;
    const limit = this.#config.retention.claimPresentationsPerWindow;
    const since = now - this.#config.retention.claimPresentationWindowMs;
    const presented =
      claim.presented ??
      (
        await this.#statements.presented(
          { hash: request.hash, row: request.row, device: deviceId, since },
          trx,
        )
      ).rows[0];
    // A device presents codes unauthenticated by any account: past the limit its code is not considered.
    if (source === "gateway" && Number(presented?.device_recent_attempts ?? 0) >= limit)
      throw new ClaimRefused("rate_limited");
    if (!presented || presented.id === null) throw new ClaimRefused("unknown_code");
    const code = presented as PresentedRow & ClaimCodesTable;
    seen.claimId = code.id;
    seen.recognised = codeOwner(code) ?? null;
    if (source === "gateway" && Number(code.recent_attempts) >= limit) throw new ClaimRefused("rate_limited");
    if (code.revoked_at !== null) throw new ClaimRefused("revoked_code");
    if (code.used_at !== null)
      throw new ClaimRefused(code.device_id === deviceId ? "already_owned" : "used_code");
    if (code.expires_at <= now) throw new ClaimRefused("expired_code");
    const owner = codeOwner(code);
    if (!owner) throw new ClaimRefused("unknown_code");
    if (code.device_found === null) throw new ClaimRefused("unknown_device");
    const device = {
      product_id: code.device_product_id,
      owner_user_id: code.device_owner_user_id,
      owner_customer_id: code.device_owner_customer_id,
    };
    if (owner.kind === "customer") {
      if (device.product_id === null) throw new ClaimRefused("device_not_in_product");
      if (device.product_id !== owner.productId) throw new ClaimRefused("wrong_product");
    } else if (
      device.product_id !== null &&
      !(await isTeamMember(trx, { userId: owner.userId, productId: device.product_id }))
    ) {
      // A product's devices go to its customers, or to its own team while developing. @see spec/cloud-api.md §3.5
      throw new ClaimRefused("not_product_team");
    }
    const alreadyMine = sameOwner(owner, device);
    if (!alreadyMine && (device.owner_user_id !== null || device.owner_customer_id !== null))
      throw new ClaimRefused("owned_by_other");
    const reason: ClaimReason = alreadyMine ? "already_owned" : "claimed";
    const attempt = { claimId: code.id, deviceId, outcome: "claimed" as const, reason, source };
    const logged = { device: Number(code.device_logged_attempts), code: Number(code.logged_attempts) };
    return { code, owner, device, alreadyMine, reason, attempt, logged };
  }

  /** A checked claim's writes, one at a time: spend the code, bind the device, record the attempt. */
  async #write(trx: Transaction<Database>, claim: BatchClaim, checked: CheckedClaim): Promise<void> {
    const { seen } = claim;
    const { id: deviceId, source, now } = claim.request;
    const { code, owner, alreadyMine, reason, attempt, logged } = checked;
    if (this.#postgres) {
      // Spend, bind and record in one statement: one round trip instead of three (see #spendBindRecord).
      seen.wrote = true;
      await this.#spendBindRecord(trx, {
        now,
        deviceId,
        owner,
        codeId: code.id,
        bind: !alreadyMine,
        reason,
        source,
      });
      await this.#capLogs(trx, attempt, logged);
    } else {
      seen.wrote = true;
      const spent = await this.#statements.spend({ now, deviceId, id: code.id }, trx);
      if (!spent.numAffectedRows) throw new ClaimRefused(await this.#unspentReason(trx, code.id, deviceId));
      // The conditional bind can still lose to a concurrent claim of the same device with another code
      // (PostgreSQL, READ COMMITTED): then refuse, which rolls the spent code back.
      if (!alreadyMine && !(await this.#bind(trx, { deviceId, owner })))
        throw new ClaimRefused("owned_by_other");
      await this.#record(trx, attempt, logged);
    }
  }

  /** A claim whose writes are done: its events queued with their webhook deliveries, and its result. */
  async #finish(trx: Transaction<Database>, claim: BatchClaim, checked: CheckedClaim): Promise<ClaimResult> {
    const { request, hooks } = claim;
    const { id: deviceId, source } = request;
    const { code, owner, device, alreadyMine, reason } = checked;
    const described =
      owner.kind === "user"
        ? { kind: "user", user_id: owner.userId, username: code.owner_username }
        : {
            kind: "customer",
            customer_id: owner.customerId,
            email: code.owner_email,
            product_id: owner.productId,
          };
    const events = [
      this.#ownerEvent({
        name: CLAIM_ATTEMPT_EVENT,
        deviceId,
        owner,
        data: { claim_id: code.id, device_id: deviceId, outcome: "claimed", reason, owner: described },
      }),
    ];
    if (!alreadyMine)
      events.push(
        this.#ownerEvent({
          name: DEVICE_CLAIMED_EVENT,
          deviceId,
          owner,
          data: { device_id: deviceId, claim_id: code.id, source, owner: described },
        }),
      );
    const bound = {
      owner_user_id: owner.kind === "user" ? owner.userId : null,
      owner_customer_id: owner.kind === "customer" ? owner.customerId : null,
      product_id: device.product_id,
    };
    // A device claiming in session: its `online` event goes to the new owner, queued with the others.
    const online: CloudEvent | undefined = request.online
      ? {
          name: "spark/status",
          data: "online",
          ttl: 60,
          publishedAt: new Date(this.#config.clock()).toISOString(),
          coreid: deviceId,
          isPublic: false,
          ownerUserId: bound.owner_user_id,
          ownerCustomerId: bound.owner_customer_id,
          productId: bound.product_id,
        }
      : undefined;
    const queued = await this.#queue(trx, online ? [...events, online] : events, hooks);
    return {
      ok: true,
      reason,
      claimId: code.id,
      owner,
      codeOwner: owner,
      events: queued.slice(0, events.length),
      ...(online ? { device: bound, online: queued[events.length] } : {}),
    };
  }

  /**
   * A refused claim, its own work rolled back: records the attempt and tells the code's owner (when the code
   * was recognised), in the batch's transaction.
   */
  async #refusedIn(trx: Transaction<Database>, claim: BatchClaim, reason: ClaimReason): Promise<ClaimResult> {
    const { request, seen, hooks } = claim;
    const { id: deviceId, source } = request;
    const { claimId, recognised } = seen;
    await this.#record(trx, { claimId, deviceId, outcome: "refused", reason, source });
    const ok = reason === "already_owned";
    const events =
      recognised && claimId
        ? await this.#queue(
            trx,
            [
              this.#ownerEvent({
                name: CLAIM_ATTEMPT_EVENT,
                deviceId,
                owner: recognised,
                data: { claim_id: claimId, device_id: deviceId, outcome: ok ? "claimed" : "refused", reason },
              }),
            ],
            hooks,
          )
        : [];
    return { ok, reason, claimId, owner: null, codeOwner: recognised, events };
  }

  /**
   * Claims a device by ID for the caller (`POST /v1/devices`). The device must be online and unowned;
   * a customer may only claim devices of its product. @see spec/cloud-api.md §4.1
   */
  async claimById(options: {
    owner: Owner;
    deviceId: string;
    requestTransfer: boolean;
  }): Promise<Record<string, unknown>> {
    const { owner } = options;
    const device = await this.#devices.get(options.deviceId);
    // Unknown and offline devices get the same answer, so that IDs cannot be probed.
    if (!device) throw new AppError("DEVICE_NOT_CONNECTED", "Device is not connected");
    // A device outside a customer's product does not exist for that customer: the same answer as unknown.
    if (owner.kind === "customer" && device.product_id !== owner.productId)
      throw new AppError("DEVICE_NOT_CONNECTED", "Device is not connected");
    // A product device is for the product's customers and team only; to anyone else it does not exist.
    if (
      owner.kind === "user" &&
      device.product_id !== null &&
      !(await isTeamMember(this.#db, { userId: owner.userId, productId: device.product_id }))
    )
      throw new AppError("DEVICE_NOT_CONNECTED", "Device is not connected");
    const ownerId = owner.kind === "user" ? owner.userId : owner.customerId;
    if (sameOwner(owner, device))
      return {
        ok: true,
        id: device.id,
        deviceID: device.id,
        user_id: ownerId,
        connected: device.online === 1,
        claimed: true,
      };
    if (device.owner_user_id !== null || device.owner_customer_id !== null) {
      if (!options.requestTransfer)
        throw new AppError("DEVICE_OWNED_BY_OTHER", "That belongs to someone else.");
      const transferId = await this.#transfers.request({ deviceId: device.id, requester: owner });
      return { ok: true, transfer_id: transferId };
    }
    if (device.online !== 1) {
      await this.#record(this.#db, {
        claimId: null,
        deviceId: device.id,
        outcome: "refused",
        reason: "device_offline",
        source: "api",
      });
      throw new AppError("DEVICE_NOT_CONNECTED", "Device is not connected");
    }
    const bound = await this.#db.transaction().execute(async (trx) => {
      const ok = await this.#bind(trx, { deviceId: device.id, owner });
      await this.#record(trx, {
        claimId: null,
        deviceId: device.id,
        outcome: ok ? "claimed" : "refused",
        reason: ok ? "claimed" : "owned_by_other",
        source: "api",
      });
      if (!ok) return undefined;
      return this.#queue(trx, [
        this.#ownerEvent({
          name: DEVICE_CLAIMED_EVENT,
          deviceId: device.id,
          owner,
          data: {
            device_id: device.id,
            claim_id: null,
            source: "api",
            owner: await this.describeOwner(owner, trx),
          },
        }),
      ]);
    });
    if (!bound) throw new AppError("DEVICE_OWNED_BY_OTHER", "That belongs to someone else.");
    for (const event of bound) await this.#bus?.publish(event);
    return { ok: true, id: device.id, deviceID: device.id, user_id: ownerId, connected: true, claimed: true };
  }

  /** Sets the owner only if the device has none (so two claims can never both win); names it if unnamed. */
  /**
   * PostgreSQL: the code spent, the device bound (unless already the owner's) and the attempt recorded, by
   * one statement whose parts each depend on the one before (data-modifying CTEs, one snapshot): the code
   * is spent only if unused and unrevoked, the device bound only if the code was spent and the device is
   * still unowned, the attempt recorded only if both happened. Refuses as the separate statements did: a
   * code spent meanwhile is "used_code"; a device bound meanwhile by a concurrent claim with another code
   * (READ COMMITTED) is "owned_by_other", and the refusal rolls the spent code back with the transaction.
   */
  async #spendBindRecord(
    trx: Transaction<Database>,
    options: {
      now: number;
      deviceId: string;
      owner: Owner;
      codeId: string;
      bind: boolean;
      reason: ClaimReason;
      source: ClaimSource;
    },
  ): Promise<void> {
    const [row] = await this.#spendBindRecordAll(trx, [
      this.#spendRow({ ...options, name: this.#devices.nameCandidate(), index: 0 }),
    ]);
    if (!row?.spent) throw new ClaimRefused(await this.#unspentReason(trx, options.codeId, options.deviceId));
    if (!options.bind) return;
    if (!row.bound) throw new ClaimRefused("owned_by_other");
    // The candidate was another device's name: draw until one is free (rare: 40,000 names).
    if (row.name === null) await this.#nameAfresh(trx, options.deviceId);
  }

  /** A claim's row of {@link SPEND_BIND_RECORD_ALL_POSTGRES}. */
  #spendRow(claim: {
    index: number;
    now: number;
    deviceId: string;
    owner: Owner;
    codeId: string;
    name: string;
    bind: boolean;
    reason: ClaimReason;
    source: ClaimSource;
  }): Record<string, unknown> {
    const { owner } = claim;
    return {
      i: claim.index,
      now: claim.now,
      d: claim.deviceId,
      c: claim.codeId,
      ou: owner.kind === "user" ? owner.userId : null,
      oc: owner.kind === "customer" ? owner.customerId : null,
      n: claim.name,
      b: claim.bind,
      a: newId(),
      r: claim.reason,
      s: claim.source,
      at: this.#config.clock(),
    };
  }

  /** Runs {@link SPEND_BIND_RECORD_ALL_POSTGRES} for `rows`; what each row did, by its position. */
  async #spendBindRecordAll(
    trx: Transaction<Database>,
    rows: readonly Record<string, unknown>[],
  ): Promise<({ spent: boolean; bound: boolean; name: string | null } | undefined)[]> {
    if (rows.length === 0) return [];
    const result = await trx.executeQuery<{ i: number; spent: boolean; bound: boolean; name: string | null }>(
      CompiledQuery.raw(SPEND_BIND_RECORD_ALL_POSTGRES, [JSON.stringify(rows)]),
    );
    const byRow = new Map(result.rows.map((row) => [Number(row.i), row]));
    return rows.map((_, index) => byRow.get(index));
  }

  /** Names a device just bound whose name candidate its owner already had. */
  async #nameAfresh(trx: Transaction<Database>, deviceId: string): Promise<void> {
    const device = await trx
      .selectFrom("devices")
      .selectAll()
      .where("id", "=", deviceId)
      .executeTakeFirstOrThrow();
    await trx
      .updateTable("devices")
      .set({ name: await this.#devices.generateName(device, trx) })
      .where("id", "=", device.id)
      .execute();
  }

  /**
   * Why a code the claim found usable could not be spent: another transaction revoked or spent it after the
   * claim read it (PostgreSQL, READ COMMITTED: the batch reads every code at its start, and the conditional
   * spend sees what committed since). Read again, so that the refusal names what happened.
   */
  async #unspentReason(trx: Transaction<Database>, codeId: string, deviceId: string): Promise<ClaimReason> {
    const code = await trx
      .selectFrom("claim_codes")
      .select(["revoked_at", "used_at", "device_id"])
      .where("id", "=", codeId)
      .executeTakeFirst();
    if (!code) return "unknown_code";
    if (code.revoked_at !== null) return "revoked_code";
    return code.device_id === deviceId ? "already_owned" : "used_code";
  }

  async #bind(trx: Transaction<Database>, options: { deviceId: string; owner: Owner }): Promise<boolean> {
    const { owner } = options;
    const params = {
      owner: owner.kind === "user" ? owner.userId : owner.customerId,
      now: this.#config.clock(),
      id: options.deviceId,
      candidate: this.#devices.nameCandidate(),
    };
    const bound =
      owner.kind === "user"
        ? await this.#statements.bindToUser(params, trx)
        : await this.#statements.bindToCustomer(params, trx);
    const device = bound.rows[0];
    if (!device) return false;
    // The candidate was another device's name: draw until one is free (rare: 40,000 names).
    if (device.name === null) {
      await trx
        .updateTable("devices")
        .set({ name: await this.#devices.generateName(device, trx) })
        .where("id", "=", device.id)
        .execute();
    }
    return true;
  }

  /**
   * Logs an attempt and caps the device's and the code's logs. `logged` gives the logs' sizes when the
   * caller read them in this transaction: a log that stays within the cap is not trimmed (one statement
   * instead of three). Two attempts on one key at once may then leave it one row over the cap until its
   * next attempt trims it.
   */
  async #record(
    db: Kysely<Database>,
    attempt: {
      claimId: string | null;
      deviceId: string;
      outcome: string;
      reason: ClaimReason;
      source: ClaimSource;
    },
    logged?: { device: number; code: number },
  ): Promise<void> {
    await this.#statements.recordAttempt(
      {
        id: newId(),
        claimId: attempt.claimId,
        deviceId: attempt.deviceId,
        outcome: attempt.outcome,
        reason: attempt.reason,
        source: attempt.source,
        at: this.#config.clock(),
      },
      db,
    );
    await this.#capLogs(db, attempt, logged);
  }

  /** Caps the device's and the code's attempt logs after one more attempt (see {@link #record}). */
  async #capLogs(
    db: Kysely<Database>,
    attempt: { claimId: string | null; deviceId: string },
    logged?: { device: number; code: number },
  ): Promise<void> {
    const keep = this.#config.retention.maxClaimAttemptsPerKey;
    if (!logged || logged.device + 1 > keep)
      await this.#retention.capKey({
        db,
        table: "claim_attempts",
        key: "device_id",
        value: attempt.deviceId,
        keep,
      });
    if (attempt.claimId !== null && (!logged || logged.code + 1 > keep))
      await this.#retention.capKey({
        db,
        table: "claim_attempts",
        key: "claim_code_id",
        value: attempt.claimId,
        keep,
      });
  }

  /** The recorded attempts for a device, newest last (the claim timeline). */
  attemptsForDevice(deviceId: string): Promise<Database["claim_attempts"][]> {
    return this.#db
      .selectFrom("claim_attempts")
      .selectAll()
      .where("device_id", "=", normalizeDeviceId(deviceId))
      .orderBy("at")
      .execute();
  }

  /** The recorded attempts for a claim code, newest last. */
  attemptsForCode(claimId: string): Promise<Database["claim_attempts"][]> {
    return this.#db
      .selectFrom("claim_attempts")
      .selectAll()
      .where("claim_code_id", "=", claimId)
      .orderBy("at")
      .execute();
  }

  /**
   * A claim code's status and the timeline of attempts, for the code's owner only (anyone else gets
   * undefined, the same as for an unknown id). @see DESIGN.md "Beyond the anchors" 1–2
   */
  async status(options: { claimId: string; owner: Owner }): Promise<ClaimStatus | undefined> {
    const code = await this.#db
      .selectFrom("claim_codes")
      .selectAll()
      .where("id", "=", options.claimId)
      .executeTakeFirst();
    const owner = code && codeOwner(code);
    if (!code || !owner || !sameOwnerAs(owner, options.owner)) return undefined;
    return this.#statusOf(code);
  }

  /** The owner's claim codes with their status and timelines, newest first (the console's list). */
  async list(options: { owner: Owner; limit: number }): Promise<ClaimStatus[]> {
    const { owner } = options;
    const codes = await this.#db
      .selectFrom("claim_codes")
      .selectAll()
      .where((eb) =>
        owner.kind === "user"
          ? eb.and([eb("principal_kind", "=", "user"), eb("user_id", "=", owner.userId)])
          : eb.and([eb("principal_kind", "=", "customer"), eb("customer_id", "=", owner.customerId)]),
      )
      .orderBy("created_at", "desc")
      .orderBy("id")
      .limit(options.limit)
      .execute();
    const statuses: ClaimStatus[] = [];
    for (const code of codes) statuses.push(await this.#statusOf(code));
    return statuses;
  }

  async #statusOf(code: ClaimCodesTable): Promise<ClaimStatus> {
    const now = this.#config.clock();
    const status: ClaimState =
      code.used_at !== null
        ? "claimed"
        : code.revoked_at !== null
          ? "revoked"
          : code.expires_at <= now
            ? "expired"
            : "pending";
    const iso = (ms: number) => new Date(ms).toISOString();
    const attempts = await this.attemptsForCode(code.id);
    return {
      claim_id: code.id,
      status,
      device_id: code.device_id,
      created_at: iso(code.created_at),
      expires_at: iso(code.expires_at),
      claimed_at: code.used_at === null ? null : iso(code.used_at),
      attempts: attempts.map((attempt) => ({
        at: iso(attempt.at),
        device_id: attempt.device_id,
        outcome: attempt.outcome,
        reason: attempt.reason,
        source: attempt.source,
      })),
    };
  }
}
