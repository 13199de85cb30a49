import { randomInt } from "node:crypto";
import type { Kysely } from "kysely";

import type { CloudConfig } from "../config.js";
import { BadRequestError, NotFoundError } from "../errors.js";
import { hashSecret, newToken, verifySecret } from "../security.js";
import { isUniqueViolation } from "../storage/database.js";
import { MAX_INTEGER } from "../storage/schema.js";
import type { Database, OAuthClientsTable, ProductsTable } from "../storage/schema.js";
import type { Principal } from "./principal.js";

/** A product as stored, with its generated id. */
export type Product = Omit<ProductsTable, "id"> & { id: number };

/** OAuth client types. @see spec/cloud-api.md §1.5 */
export const CLIENT_TYPES = ["installed", "web"] as const;

/** The scopes a client may have: `customers:create` for apps, none (full) for product servers. @see spec/cloud-api.md §1.5 */
export const CLIENT_SCOPES = ["customers:create", "*:*", "none"] as const;

function slugify(name: string): string {
  const base = name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 40);
  return base.length > 0 && /[a-z]/.test(base) ? base : `product-${base}`.replace(/-$/, "");
}

/** The wire form of a product. @see spec/cloud-api.md §3.5 (settings) */
export function productToApi(product: Product): Record<string, unknown> {
  return {
    id: product.id,
    platform_id: product.platform_id,
    name: product.name,
    slug: product.slug,
    description: product.description,
    subscription_id: null,
    groups: [],
    settings: { quarantine: false, known_application: { opt_in: false } },
    created_at: new Date(product.created_at).toISOString(),
  };
}

/** Products, their team members and their OAuth clients. */
export class ProductService {
  readonly #db: Kysely<Database>;
  readonly #config: CloudConfig;

  constructor(options: { db: Kysely<Database>; config: CloudConfig }) {
    this.#db = options.db;
    this.#config = options.config;
  }

  /** Creates a product owned by `userId`, who becomes its first team member. */
  async create(options: {
    userId: string;
    name: string;
    platformId: number;
    description?: string;
  }): Promise<Product> {
    const name = options.name.trim();
    if (name.length === 0 || name.length > 100)
      throw new BadRequestError("name is required (at most 100 characters)");
    if (!Number.isInteger(options.platformId) || options.platformId <= 0 || options.platformId > MAX_INTEGER)
      throw new BadRequestError("platform_id must be a positive integer");
    const now = this.#config.clock();
    // Two products with the same name created at once pick the same slug; the loser tries another.
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await this.#insert({ ...options, name, now, suffixed: attempt > 0 });
      } catch (error) {
        if (!isUniqueViolation(error) || attempt >= 4) throw error;
      }
    }
  }

  async #insert(options: {
    userId: string;
    name: string;
    platformId: number;
    description?: string;
    now: number;
    suffixed: boolean;
  }): Promise<Product> {
    const { name, now } = options;
    const suffixed = () => `${slugify(name)}-v${randomInt(100, 100_000)}`;
    return this.#db.transaction().execute(async (trx) => {
      let slug = options.suffixed ? suffixed() : slugify(name);
      while (await trx.selectFrom("products").select("id").where("slug", "=", slug).executeTakeFirst()) {
        slug = suffixed();
      }
      const row = {
        slug,
        name,
        description: options.description ?? "",
        platform_id: options.platformId,
        owner_user_id: options.userId,
        created_at: now,
      };
      const inserted = await trx.insertInto("products").values(row).returning("id").executeTakeFirstOrThrow();
      await trx
        .insertInto("product_members")
        .values({ product_id: inserted.id, user_id: options.userId, role: "owner" })
        .execute();
      return { id: inserted.id, ...row };
    });
  }

  /** Finds a product by numeric id or slug. @see spec/cloud-api.md §2 (":productIdOrSlug") */
  async find(idOrSlug: string): Promise<Product | undefined> {
    const query = this.#db.selectFrom("products").selectAll();
    if (!/^\d+$/.test(idOrSlug)) return query.where("slug", "=", idOrSlug).executeTakeFirst();
    // An id no integer column can hold is simply unknown (PostgreSQL would fail the query instead).
    const id = Number(idOrSlug);
    return id > MAX_INTEGER ? undefined : query.where("id", "=", id).executeTakeFirst();
  }

  /** Products on whose team the user is. */
  listForUser(userId: string): Promise<Product[]> {
    return this.#db
      .selectFrom("products")
      .innerJoin("product_members", "product_members.product_id", "products.id")
      .selectAll("products")
      .where("product_members.user_id", "=", userId)
      .orderBy("products.id")
      .execute();
  }

  /** True when the principal may administer the product: a team member, or the product's own token. */
  async canAdminister(principal: Principal, productId: number): Promise<boolean> {
    if (principal.kind === "product") return principal.productId === productId;
    if (principal.kind !== "user") return false;
    const row = await this.#db
      .selectFrom("product_members")
      .select("user_id")
      .where("product_id", "=", productId)
      .where("user_id", "=", principal.userId)
      .executeTakeFirst();
    return row !== undefined;
  }

  /** Creates an OAuth client; the returned secret is never shown again. @see spec/cloud-api.md §1.5 */
  async createClient(options: {
    productId: number | null;
    ownerUserId: string | null;
    name: string;
    type: string;
    redirectUri?: string | undefined;
    scope?: string | undefined;
  }): Promise<{ client: OAuthClientsTable; secret: string }> {
    const name = options.name.trim();
    if (name.length === 0 || name.length > 100) throw new BadRequestError("name is required");
    if (!(CLIENT_TYPES as readonly string[]).includes(options.type))
      throw new BadRequestError("type must be installed or web");
    if (options.type === "web" && !options.redirectUri)
      throw new BadRequestError("redirect_uri is required for web clients");
    const scope = normalizeScope(options.scope);
    const secret = newToken();
    let id = "";
    do id = `${slugify(name)}-${randomInt(1000, 10_000)}`;
    while (await this.getClient(id));
    const client: OAuthClientsTable = {
      id,
      secret_hash: hashSecret(secret),
      name,
      type: options.type,
      redirect_uri: options.redirectUri ?? null,
      scope,
      product_id: options.productId,
      owner_user_id: options.ownerUserId,
      created_at: this.#config.clock(),
    };
    await this.#db.insertInto("oauth_clients").values(client).execute();
    return { client, secret };
  }

  /** A client by id, or undefined. */
  getClient(id: string): Promise<OAuthClientsTable | undefined> {
    return this.#db.selectFrom("oauth_clients").selectAll().where("id", "=", id).executeTakeFirst();
  }

  /** The registered client with these credentials, or undefined (secret compared in constant time). */
  async authenticateClient(id: string, secret: string): Promise<OAuthClientsTable | undefined> {
    const client = await this.getClient(id);
    return client && verifySecret(secret, client.secret_hash) ? client : undefined;
  }

  /** A product's clients. */
  listClients(productId: number): Promise<OAuthClientsTable[]> {
    return this.#db
      .selectFrom("oauth_clients")
      .selectAll()
      .where("product_id", "=", productId)
      .orderBy("created_at")
      .execute();
  }

  /** Renames a client or changes its scope. */
  async updateClient(options: {
    productId: number;
    clientId: string;
    name?: string | undefined;
    scope?: string | undefined;
  }): Promise<OAuthClientsTable> {
    const client = await this.getClient(options.clientId);
    if (!client || client.product_id !== options.productId) throw new NotFoundError("Client not found");
    const changes: Partial<OAuthClientsTable> = {};
    if (options.name !== undefined) {
      if (options.name.trim().length === 0) throw new BadRequestError("name must not be empty");
      changes.name = options.name.trim();
    }
    if (options.scope !== undefined) changes.scope = normalizeScope(options.scope);
    if (Object.keys(changes).length > 0)
      await this.#db.updateTable("oauth_clients").set(changes).where("id", "=", client.id).execute();
    return { ...client, ...changes };
  }

  /** Deletes a client; tokens it issued stay valid until they expire, as with Particle. */
  async deleteClient(options: { productId: number; clientId: string }): Promise<void> {
    const result = await this.#db
      .deleteFrom("oauth_clients")
      .where("id", "=", options.clientId)
      .where("product_id", "=", options.productId)
      .executeTakeFirst();
    if (result.numDeletedRows === 0n) throw new NotFoundError("Client not found");
  }
}

/** `none` and `*:*` both mean full permissions and are stored as null. */
function normalizeScope(scope: string | undefined): string | null {
  if (scope === undefined || scope === "" || scope === "none" || scope === "*:*") return null;
  if (scope !== "customers:create") throw new BadRequestError("scope must be customers:create, *:* or none");
  return scope;
}

/** The wire form of a client; the secret only on creation. */
export function clientToApi(client: OAuthClientsTable, secret?: string): Record<string, unknown> {
  return {
    id: client.id,
    name: client.name,
    type: client.type,
    ...(client.redirect_uri ? { redirect_uri: client.redirect_uri } : {}),
    scope: client.scope ?? "none",
    ...(secret ? { secret } : {}),
  };
}
