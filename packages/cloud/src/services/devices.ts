import { createPublicKey, randomInt } from "node:crypto";
import type { Kysely, Updateable } from "kysely";
import { PostgresAdapter, sql } from "kysely";

import { isDeviceId, normalizeDeviceId } from "@roost/protocol";

import type { CloudConfig } from "../config.js";
import { BadRequestError, DevicePermissionError } from "../errors.js";
import { MAX_INTEGER } from "../storage/schema.js";
import type { Database, DeviceRecord, DevicesTable } from "../storage/schema.js";
import { prepareQuery } from "./prepared.js";
import type { Owner, Principal } from "./principal.js";

/** A device row with its owner's display name (user name or customer e-mail) joined in. */
export type DeviceRow = DeviceRecord & { owner_name: string | null };

/** The columns the API shows of a device: lists read only these (not the key, not bookkeeping). */
const LISTED_COLUMNS = [
  "id",
  "name",
  "notes",
  "product_id",
  "platform_id",
  "online",
  "last_heard",
  "last_handshake_at",
  "last_ip_address",
  "system_firmware_version",
  "firmware_version",
  "serial_number",
  "functions",
  "variables",
  "development",
  "quarantined",
  "denied",
] as const satisfies readonly (keyof DeviceRecord)[];

/** A device as lists read it: what {@link deviceToApi} shows. */
export type ListedDevice = Pick<DeviceRow, (typeof LISTED_COLUMNS)[number] | "owner_name">;

/** Devices with their owner's display name (user name or customer e-mail) selected as `owner_name`. */
function withOwnerName(db: Kysely<Database>) {
  return db
    .selectFrom("devices")
    .leftJoin("users as owner_users", "owner_users.id", "devices.owner_user_id")
    .leftJoin("customers as owner_customers", "owner_customers.id", "devices.owner_customer_id")
    .select((eb) => eb.fn.coalesce("owner_users.username", "owner_customers.email").as("owner_name"));
}

/** The statements of the hot device reads, compiled once (bench api and claim scenarios). */
function ownerReads(db: Kysely<Database>) {
  const listOf = (column: "owner_user_id" | "owner_customer_id") =>
    prepareQuery<{ owner: string }, ListedDevice>(db, (slot) =>
      db
        .selectFrom("devices")
        .select(LISTED_COLUMNS)
        .select(sql<string | null>`null`.as("owner_name"))
        .where(column, "=", slot("owner"))
        // NULLS LAST spelled out: PostgreSQL sorts nulls first in a descending order, SQLite last.
        .orderBy("last_handshake_at", (ob) => ob.desc().nullsLast())
        .orderBy("id"),
    );
  const idsOf = (column: "owner_user_id" | "owner_customer_id") =>
    prepareQuery<{ owner: string }, { id: string }>(db, (slot) =>
      db
        .selectFrom("devices")
        .select("id")
        .where(column, "=", slot("owner"))
        .orderBy("last_handshake_at", (ob) => ob.desc().nullsLast())
        .orderBy("id"),
    );
  const postgres = db.getExecutor().adapter instanceof PostgresAdapter;
  const signedOf = (column: "owner_user_id" | "owner_customer_id") =>
    prepareQuery<{ owner: string }, SignedDevice>(db, (slot) =>
      db
        .selectFrom("devices")
        .select(["id", signatureOf(postgres).as("signature")])
        .where(column, "=", slot("owner"))
        .orderBy("last_handshake_at", (ob) => ob.desc().nullsLast())
        .orderBy("id"),
    );
  return {
    signedOfUser: signedOf("owner_user_id"),
    signedOfCustomer: signedOf("owner_customer_id"),
    // Every connection and every claim reads its device: built once.
    byId: prepareQuery<{ id: string }, DeviceRow>(db, (slot) =>
      withOwnerName(db).selectAll("devices").where("devices.id", "=", slot("id")),
    ),
    listOfUser: listOf("owner_user_id"),
    listOfCustomer: listOf("owner_customer_id"),
    idsOfUser: idsOf("owner_user_id"),
    idsOfCustomer: idsOf("owner_customer_id"),
    userName: prepareQuery<{ id: string }, { name: string | null }>(db, (slot) =>
      db.selectFrom("users").select("username as name").where("id", "=", slot("id")),
    ),
    customerName: prepareQuery<{ id: string }, { name: string | null }>(db, (slot) =>
      db.selectFrom("customers").select("email as name").where("id", "=", slot("id")),
    ),
  };
}

/** Key algorithms `POST /v1/provisioning` accepts, as `particle keys send` names them. */
export const KEY_ALGORITHMS = ["rsa", "ecc"] as const;

const NAME_WORDS_A = [
  "amber",
  "brisk",
  "calm",
  "dusty",
  "eager",
  "fuzzy",
  "gentle",
  "happy",
  "icy",
  "jolly",
  "keen",
  "lucky",
  "mellow",
  "nimble",
  "proud",
  "quiet",
  "rapid",
  "sunny",
  "tidy",
  "witty",
];
const NAME_WORDS_B = [
  "badger",
  "crane",
  "dingo",
  "eagle",
  "ferret",
  "gecko",
  "heron",
  "ibis",
  "jaguar",
  "koala",
  "lemur",
  "marten",
  "newt",
  "otter",
  "panda",
  "quail",
  "raven",
  "stoat",
  "tapir",
  "wombat",
];

function pick(words: readonly string[]): string {
  return words[randomInt(words.length)] ?? "device";
}

function parseJson<T>(text: string, fallback: T): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/**
 * The type names the API gives a device's variables, by the type codes its describe carries (Device OS
 * `Spark_Data_TypeDef`: 1 boolean, 2 int, 4 string, 9 double). particle-cli prints them as they come
 * (`version (int32)` in its own fixtures); a code it does not know is shown as the number it is.
 */
const VARIABLE_TYPE_NAMES: Readonly<Record<number, string>> = {
  1: "bool",
  2: "int32",
  4: "string",
  9: "double",
};

function variableTypeNames(types: Record<string, number | string>): Record<string, string> {
  const named: Record<string, string> = {};
  for (const [name, type] of Object.entries(types))
    named[name] = typeof type === "number" ? (VARIABLE_TYPE_NAMES[type] ?? String(type)) : type;
  return named;
}

/**
 * The wire form of a device, with every §4.3 field Roost knows. Mobile SDKs read `connected`, newer
 * clients `online`: both are sent. @see spec/cloud-api.md §4.3
 */
export function deviceToApi(
  device: ListedDevice,
  options: { product?: boolean } = {},
): Record<string, unknown> {
  const online = device.online === 1;
  const body: Record<string, unknown> = {
    id: device.id,
    name: device.name,
    owner: device.owner_name,
    last_app: null,
    last_ip_address: device.last_ip_address,
    last_heard: iso(device.last_heard),
    last_handshake_at: iso(device.last_handshake_at),
    product_id: device.product_id ?? device.platform_id,
    platform_id: device.platform_id,
    online,
    connected: online,
    cellular: false,
    notes: device.notes,
    functions: parseJson<string[]>(device.functions, []),
    variables: variableTypeNames(parseJson<Record<string, number | string>>(device.variables, {})),
    status: "normal",
    serial_number: device.serial_number,
    mac_wifi: null,
    system_firmware_version: device.system_firmware_version,
    current_build_target: device.system_firmware_version,
    default_build_target: device.system_firmware_version,
    pinned_build_target: null,
    firmware_updates_enabled: true,
    firmware_updates_forced: false,
  };
  if (options.product || device.product_id !== null) {
    Object.assign(body, {
      firmware_product_id: device.product_id,
      firmware_version: device.firmware_version,
      desired_firmware_version: null,
      targeted_firmware_release_version: null,
      groups: [],
      development: device.development === 1,
      quarantined: device.quarantined === 1,
      denied: device.denied === 1,
      customer: undefined,
    });
  }
  return body;
}

/** Devices whose wire form {@link DeviceJsonCache} keeps, at most (≈ 1 KB each with its signature). */
const DEVICE_JSON_ENTRIES = 20_000;

/** The listed columns besides the ID, in the order of a device's signature. */
const SIGNED_COLUMNS = LISTED_COLUMNS.filter((column) => column !== "id");

/**
 * A listed device as the list reads it: its ID and its listed columns as one JSON array text, built by the
 * database (`json_array` / `json_build_array`). One string per row costs the driver far less than
 * seventeen values, and it is what the cache compares.
 */
interface SignedDevice {
  id: string;
  signature: string;
}

/** The signature of a device row, as an SQL expression of the dialect. */
function signatureOf(postgres: boolean) {
  const columns = sql.join(SIGNED_COLUMNS.map((column) => sql.ref(`devices.${column}`)));
  return postgres ? sql<string>`json_build_array(${columns})::text` : sql<string>`json_array(${columns})`;
}

/**
 * The JSON text of each listed device's wire form, kept while its row stays the same. A list of 1,000
 * devices spent most of its time turning the same rows into the same text on every request (timestamps to
 * ISO strings, the function and variable JSON parsed, then the whole answer stringified: bench api
 * scenario). A device whose signature or owner name changed is serialised afresh from its signature. The
 * text is exactly `JSON.stringify(deviceToApi(row))`, so the answer's bytes are what they were.
 */
export class DeviceJsonCache {
  readonly #entries = new Map<string, { signature: string; ownerName: string | null; json: string }>();

  /** The wire form of one device as JSON text. */
  json(device: SignedDevice, ownerName: string | null): string {
    const cached = this.#entries.get(device.id);
    if (cached && cached.signature === device.signature && cached.ownerName === ownerName) return cached.json;
    const values = JSON.parse(device.signature) as unknown[];
    const row: Record<string, unknown> = { id: device.id, owner_name: ownerName };
    SIGNED_COLUMNS.forEach((column, index) => (row[column] = values[index] ?? null));
    const json = JSON.stringify(deviceToApi(row as ListedDevice));
    if (cached) this.#entries.delete(device.id);
    else if (this.#entries.size >= DEVICE_JSON_ENTRIES) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    this.#entries.set(device.id, { signature: device.signature, ownerName, json });
    return json;
  }

  /** A JSON array of the devices' wire forms. */
  list(devices: readonly SignedDevice[], ownerName: string | null): string {
    let text = "[";
    for (let index = 0; index < devices.length; index++) {
      if (index > 0) text += ",";
      text += this.json(devices[index] as SignedDevice, ownerName);
    }
    return `${text}]`;
  }
}

/** Filters and paging of `GET /v1/products/:p/devices`. @see spec/cloud-api.md §4.5 */
export interface ProductDeviceQuery {
  deviceId?: string | undefined;
  deviceName?: string | undefined;
  serialNumber?: string | undefined;
  quarantined?: boolean | undefined;
  sortAttr?: string | undefined;
  sortDir?: "asc" | "desc" | undefined;
  page: number;
  perPage: number;
}

/** Device identities (registered keys), ownership reads, metadata edits and product membership. */
export class DeviceService {
  readonly #db: Kysely<Database>;
  readonly #config: CloudConfig;
  readonly #reads: ReturnType<typeof ownerReads>;
  readonly #listed = new DeviceJsonCache();

  constructor(options: { db: Kysely<Database>; config: CloudConfig }) {
    this.#db = options.db;
    this.#config = options.config;
    this.#reads = ownerReads(options.db);
  }

  /** Devices with their owner's display name; the base of every read. */
  query(db: Kysely<Database> = this.#db) {
    return withOwnerName(db).selectAll("devices");
  }

  /** A device by exact ID, whoever owns it. */
  get(deviceId: string): Promise<DeviceRow | undefined> {
    if (!isDeviceId(deviceId)) return Promise.resolve(undefined);
    return this.#reads.byId({ id: normalizeDeviceId(deviceId) }).then((result) => result.rows[0]);
  }

  /**
   * Registers (or replaces) a device's public key, as `particle keys send` does. Anyone signed in may
   * register an unknown ID; replacing a key is for whoever registered it, its owner, or its product's team.
   * @see spec/cloud-api.md (provisioning), DESIGN.md security rules
   */
  async register(options: {
    principal: Principal;
    deviceId: string;
    publicKey: string;
    algorithm: string;
    productId: number | null;
    platformId: number;
    mayAdministerProduct: (productId: number) => Promise<boolean>;
    /** Whether an ID the cloud does not know may be created (else it is refused like a foreign one). */
    allowNew: boolean;
    /** Whether `platformId` was given (or is the product's) rather than assumed. @default false */
    platformKnown?: boolean;
  }): Promise<DeviceRow> {
    const { principal } = options;
    if (!isDeviceId(options.deviceId))
      throw new BadRequestError("device ID must be 24 hexadecimal characters");
    const id = normalizeDeviceId(options.deviceId);
    if (!(KEY_ALGORITHMS as readonly string[]).includes(options.algorithm))
      throw new BadRequestError("algorithm must be rsa or ecc");
    if (!Number.isInteger(options.platformId) || options.platformId < 0 || options.platformId > MAX_INTEGER)
      throw new BadRequestError("platform_id must be a non-negative integer");
    let pem: string;
    try {
      const key = createPublicKey(options.publicKey);
      const type = key.asymmetricKeyType;
      if ((options.algorithm === "rsa" && type !== "rsa") || (options.algorithm === "ecc" && type !== "ec")) {
        throw new BadRequestError(`publicKey is not an ${options.algorithm} key`);
      }
      // Gen 3 devices speak DTLS with secp256r1 only. @see docs/gen3-wire-format.md §1
      if (type === "ec" && key.asymmetricKeyDetails?.namedCurve !== "prime256v1")
        throw new BadRequestError(
          "publicKey must be a P-256 (prime256v1) key: Gen 3 devices use no other curve",
        );
      pem = key.export({ type: "spki", format: "pem" }).toString();
    } catch (error) {
      if (error instanceof BadRequestError) throw error;
      throw new BadRequestError("publicKey must be a PEM-encoded public key");
    }
    const now = this.#config.clock();
    const existing = await this.get(id);
    if (existing) {
      const owner = existing.owner_user_id ?? existing.owner_customer_id;
      const mine =
        (principal.kind === "user" &&
          (existing.registered_by_user_id === principal.userId ||
            existing.owner_user_id === principal.userId)) ||
        (principal.kind === "customer" && existing.owner_customer_id === principal.customerId) ||
        (existing.product_id !== null && (await options.mayAdministerProduct(existing.product_id))) ||
        // Nobody's device (no owner, registrant or product) is anyone's; a product's device is its team's.
        (owner === null && existing.registered_by_user_id === null && existing.product_id === null);
      if (!mine) throw new DevicePermissionError();
      await this.#db
        .updateTable("devices")
        .set({
          public_key: pem,
          key_algorithm: options.algorithm,
          product_id: options.productId ?? existing.product_id,
          updated_at: now,
        })
        .where("id", "=", id)
        .execute();
    } else {
      // An unknown ID gets the same answer as a foreign one unless registration is open. @see docs/security.md
      if (!options.allowNew) throw new DevicePermissionError();
      await this.#db
        .insertInto("devices")
        .values({
          id,
          public_key: pem,
          key_algorithm: options.algorithm,
          registered_by_user_id: principal.kind === "user" ? principal.userId : null,
          product_id: options.productId,
          platform_id: options.platformId,
          platform_confirmed: options.platformKnown === true ? 1 : 0,
          created_at: now,
          updated_at: now,
        })
        .execute();
    }
    const device = await this.get(id);
    if (!device) throw new Error("device vanished after registration");
    return device;
  }

  /** The principal's devices, most recently connected first. @see spec/cloud-api.md §4.3 */
  async listOwned(owner: Owner): Promise<ListedDevice[]> {
    // Every row has the same owner: its name is read once, not joined per row.
    if (owner.kind === "user") {
      const [name, rows] = await Promise.all([
        this.#reads.userName({ id: owner.userId }),
        this.#reads.listOfUser({ owner: owner.userId }),
      ]);
      const ownerName = name.rows[0]?.name ?? null;
      for (const row of rows.rows) row.owner_name = ownerName;
      return rows.rows;
    }
    const [name, rows] = await Promise.all([
      this.#reads.customerName({ id: owner.customerId }),
      this.#reads.listOfCustomer({ owner: owner.customerId }),
    ]);
    const ownerName = name.rows[0]?.name ?? null;
    for (const row of rows.rows) row.owner_name = ownerName;
    return rows.rows;
  }

  /** The owner's devices as the JSON text of `GET /v1/devices`, each device's text cached while unchanged. */
  async listOwnedJson(owner: Owner): Promise<string> {
    const [name, devices] = await Promise.all([
      owner.kind === "user"
        ? this.#reads.userName({ id: owner.userId })
        : this.#reads.customerName({ id: owner.customerId }),
      owner.kind === "user"
        ? this.#reads.signedOfUser({ owner: owner.userId })
        : this.#reads.signedOfCustomer({ owner: owner.customerId }),
    ]);
    return this.#listed.list(devices.rows, name.rows[0]?.name ?? null);
  }

  /** IDs of the devices an owner has, for `device_ids` in claim-code responses. */
  async ownedIds(owner: Owner): Promise<string[]> {
    // Only the IDs, in the list's order: a claim code answer should not cost a full device list.
    const result =
      owner.kind === "user"
        ? await this.#reads.idsOfUser({ owner: owner.userId })
        : await this.#reads.idsOfCustomer({ owner: owner.customerId });
    return result.rows.map((row) => row.id);
  }

  /**
   * The device a principal names by ID or name and may act on: its own, or (product token) one in its
   * product. Anything else gets the same 403 as an unknown device. @see spec/cloud-api.md §4.3
   */
  async findAccessible(principal: Principal, idOrName: string): Promise<DeviceRow> {
    let query = this.query();
    if (principal.kind === "user") query = query.where("devices.owner_user_id", "=", principal.userId);
    else if (principal.kind === "customer")
      query = query.where("devices.owner_customer_id", "=", principal.customerId);
    else query = query.where("devices.product_id", "=", principal.productId);
    const byId = isDeviceId(idOrName)
      ? await query.where("devices.id", "=", normalizeDeviceId(idOrName)).executeTakeFirst()
      : undefined;
    const device =
      byId ??
      (principal.kind === "product"
        ? undefined
        : await query.where("devices.name", "=", idOrName).executeTakeFirst());
    if (!device) throw new DevicePermissionError();
    return device;
  }

  /** Sets name and/or notes; names are unique among one owner's devices. @see spec/cloud-api.md §4.4 */
  async updateMetadata(
    device: DeviceRow,
    changes: { name?: string | undefined; notes?: string | undefined },
  ): Promise<DeviceRow> {
    const set: Updateable<DevicesTable> = { updated_at: this.#config.clock() };
    if (changes.name !== undefined) {
      const name = changes.name.trim();
      if (!/^[A-Za-z0-9_-]{1,63}$/.test(name))
        throw new BadRequestError("name must be 1-63 letters, digits, dashes or underscores");
      if (isDeviceId(name)) throw new BadRequestError("name must not look like a device ID");
      if (name !== device.name && (await this.#nameTaken(device, name)))
        throw new BadRequestError("name is already in use by another device");
      set.name = name;
    }
    if (changes.notes !== undefined) {
      if (changes.notes.length > 1000) throw new BadRequestError("notes must be at most 1000 characters");
      set.notes = changes.notes;
    }
    await this.#db.updateTable("devices").set(set).where("id", "=", device.id).execute();
    return { ...device, ...set };
  }

  async #nameTaken(device: DeviceRecord, name: string, db: Kysely<Database> = this.#db): Promise<boolean> {
    let query = db.selectFrom("devices").select("id").where("name", "=", name).where("id", "!=", device.id);
    if (device.owner_user_id) query = query.where("owner_user_id", "=", device.owner_user_id);
    else if (device.owner_customer_id)
      query = query.where("owner_customer_id", "=", device.owner_customer_id);
    else return false;
    return (await query.executeTakeFirst()) !== undefined;
  }

  /** A random device name (`word_word12`), not yet checked against the owner's other devices. */
  nameCandidate(): string {
    return `${pick(NAME_WORDS_A)}_${pick(NAME_WORDS_B)}${randomInt(100)}`;
  }

  /** A fresh name for a newly claimed device that has none, unique among the owner's devices. */
  async generateName(device: DeviceRecord, db: Kysely<Database> = this.#db): Promise<string> {
    for (;;) {
      const name = this.nameCandidate();
      if (!(await this.#nameTaken(device, name, db))) return name;
    }
  }

  /** Removes the owner; the device keeps its key and product membership. @see spec/cloud-api.md §4.2 */
  async release(deviceId: string): Promise<void> {
    await this.#db
      .updateTable("devices")
      .set({
        owner_user_id: null,
        owner_customer_id: null,
        claimed_at: null,
        updated_at: this.#config.clock(),
      })
      .where("id", "=", deviceId)
      .execute();
  }

  /** A page of a product's devices with the owners among them. @see spec/cloud-api.md §4.5 */
  async listProduct(
    productId: number,
    filter: ProductDeviceQuery,
  ): Promise<{ devices: DeviceRow[]; totalPages: number }> {
    let query = this.query().where("devices.product_id", "=", productId);
    if (filter.deviceId) query = query.where(contains("devices.id", filter.deviceId));
    if (filter.deviceName) query = query.where(contains("devices.name", filter.deviceName));
    if (filter.serialNumber) query = query.where("devices.serial_number", "=", filter.serialNumber);
    if (filter.quarantined !== undefined)
      query = query.where("devices.quarantined", "=", filter.quarantined ? 1 : 0);
    const all = await query.execute();
    const column = {
      deviceName: "name",
      deviceId: "id",
      firmwareVersion: "firmware_version",
      lastConnection: "last_handshake_at",
    }[filter.sortAttr ?? "deviceId"] as keyof DeviceRow | undefined;
    const sortKey = column ?? "id";
    const direction = filter.sortDir === "desc" ? -1 : 1;
    all.sort((a, b) => direction * compare(a[sortKey], b[sortKey]) || compare(a.id, b.id));
    const totalPages = Math.max(1, Math.ceil(all.length / filter.perPage));
    const start = (filter.page - 1) * filter.perPage;
    return { devices: all.slice(start, start + filter.perPage), totalPages };
  }

  /**
   * Adds registered devices to a product. Unknown IDs and other platforms are `invalidDeviceIds`;
   * devices already in another product are `nonmemberDeviceIds`. @see spec/cloud-api.md §4.5
   */
  async importIntoProduct(options: {
    productId: number;
    platformId: number;
    ids: readonly string[];
  }): Promise<{ updated: number; nonmemberDeviceIds: string[]; invalidDeviceIds: string[] }> {
    const result = { updated: 0, nonmemberDeviceIds: [] as string[], invalidDeviceIds: [] as string[] };
    const now = this.#config.clock();
    for (const raw of new Set(options.ids.map((id) => id.trim()).filter((id) => id.length > 0))) {
      const device = await this.get(raw);
      // A product holds one platform (spec §4.5). A key sent without a platform only assumed one: such a
      // device may join any product, taking its platform until its Hello reports the real one.
      if (!device || (device.platform_confirmed === 1 && device.platform_id !== options.platformId)) {
        result.invalidDeviceIds.push(raw);
      } else if (device.product_id !== null && device.product_id !== options.productId) {
        result.nonmemberDeviceIds.push(device.id);
      } else {
        await this.#db
          .updateTable("devices")
          .set({
            product_id: options.productId,
            platform_id: options.platformId,
            quarantined: 0,
            denied: 0,
            updated_at: now,
          })
          .where("id", "=", device.id)
          .execute();
        result.updated += 1;
      }
    }
    return result;
  }

  /**
   * Removes a device from a product (unclaiming it when a customer owns it), or with `deny` marks it
   * denied instead. @see spec/cloud-api.md §4.2, §3.5
   */
  async removeFromProduct(options: { device: DeviceRow; deny: boolean }): Promise<void> {
    const now = this.#config.clock();
    if (options.deny) {
      await this.#db
        .updateTable("devices")
        .set({ denied: 1, quarantined: 0, updated_at: now })
        .where("id", "=", options.device.id)
        .execute();
      return;
    }
    await this.#db
      .updateTable("devices")
      .set({
        product_id: null,
        owner_customer_id: null,
        ...(options.device.owner_customer_id ? { claimed_at: null } : {}),
        updated_at: now,
      })
      .where("id", "=", options.device.id)
      .execute();
  }

  /** A device of the product by ID, or the usual 403 when it is not in it. */
  async findInProduct(productId: number, deviceId: string): Promise<DeviceRow> {
    const device = await this.get(deviceId);
    if (!device || device.product_id !== productId) throw new DevicePermissionError();
    return device;
  }
}

/**
 * A case-insensitive substring match with `%`, `_` and `\` taken literally. LIKE is case-insensitive on
 * SQLite and case-sensitive on PostgreSQL, so both sides are lower-cased to make the dialects agree.
 */
function contains(column: "devices.id" | "devices.name", text: string) {
  const pattern = `%${text.toLowerCase().replace(/[\\%_]/g, "\\$&")}%`;
  return sql<boolean>`lower(${sql.ref(column)}) like ${pattern} escape '\\'`;
}

function compare(a: unknown, b: unknown): number {
  if (a === b) return 0;
  if (a === null || a === undefined) return 1;
  if (b === null || b === undefined) return -1;
  return (a as number | string) < (b as number | string) ? -1 : 1;
}
