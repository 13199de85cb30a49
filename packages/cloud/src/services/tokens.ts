import type { Kysely } from "kysely";

import type { CloudConfig } from "../config.js";
import { InvalidGrantError } from "../errors.js";
import type { EventBus, NodeNotice } from "../events/bus.js";
import { hashSecret, newToken, safeEqual } from "../security.js";
import type { Database, PrincipalKind } from "../storage/schema.js";
import type { Principal } from "./principal.js";

/** The body of every successful token response. @see spec/cloud-api.md §1.1 (iOS needs all four fields) */
export interface TokenResponse {
  token_type: "bearer";
  access_token: string;
  expires_in: number;
  refresh_token: string;
}

/** Whom a new token acts for. */
export type TokenSubject =
  | { kind: "user"; userId: string }
  | { kind: "customer"; customerId: string; productId: number }
  | { kind: "product"; productId: number };

/** How long a new token lives: seconds from now (0 = never), or an absolute time. */
export interface TokenLifetime {
  expiresIn?: number | undefined;
  expiresAt?: number | undefined;
}

function subjectColumns(subject: TokenSubject): {
  principal_kind: PrincipalKind;
  user_id: string | null;
  customer_id: string | null;
  product_id: number | null;
} {
  switch (subject.kind) {
    case "user":
      return { principal_kind: "user", user_id: subject.userId, customer_id: null, product_id: null };
    case "customer":
      return {
        principal_kind: "customer",
        user_id: null,
        customer_id: subject.customerId,
        product_id: subject.productId,
      };
    case "product":
      return { principal_kind: "product", user_id: null, customer_id: null, product_id: subject.productId };
  }
}

/**
 * The client id of sign-in link tokens (`roost dev` prints a console link with one): such a token opens no
 * endpoint; it is good only for one RFC 8693 token exchange at `POST /oauth/token`, which spends it.
 */
export const SIGN_IN_LINK_CLIENT_ID = "roost-sign-in-link";

/** Principals kept in memory per node, at most; past this the oldest entry is dropped. */
const CACHE_ENTRIES = 10_000;

/**
 * How long a node trusts a cached principal without asking the database, in ms. Revocations reach every
 * node at once over the bus; this bounds how long a revoked token could still work on a node that missed
 * the notice (a bus outage).
 */
const CACHE_TTL_MS = 10_000;

/** A resolved principal and when it was read from the database. */
interface CachedPrincipal {
  readonly principal: Principal;
  readonly readAt: number;
}

/**
 * Who each recently presented access token acts for, so that an API request does not cost two database
 * reads before it starts. Bounded in size and age; revocations on any node clear it on every node.
 */
class PrincipalCache {
  readonly #entries = new Map<string, CachedPrincipal>();

  get(hash: string, now: number): Principal | undefined {
    const entry = this.#entries.get(hash);
    if (!entry) return undefined;
    const { expiresAt } = entry.principal.token;
    if (now - entry.readAt >= CACHE_TTL_MS || (expiresAt !== null && expiresAt <= now)) {
      this.#entries.delete(hash);
      return undefined;
    }
    return entry.principal;
  }

  set(hash: string, principal: Principal, now: number): void {
    if (this.#entries.size >= CACHE_ENTRIES) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    this.#entries.set(hash, { principal, readAt: now });
  }

  clear(): void {
    this.#entries.clear();
  }

  forget(notice: NodeNotice): void {
    if (notice.kind === "tokens-revoked") {
      for (const hash of notice.hashes) this.#entries.delete(hash);
      return;
    }
    if (notice.kind !== "subject-tokens-revoked") return;
    for (const [hash, { principal }] of this.#entries) {
      if (
        (principal.kind === "user" && principal.userId === notice.userId) ||
        (principal.kind === "customer" && principal.customerId === notice.customerId)
      )
        this.#entries.delete(hash);
    }
  }
}

/** Access and refresh tokens: issued as random secrets, stored only as SHA-256 hashes. */
export class TokenService {
  readonly #db: Kysely<Database>;
  readonly #config: CloudConfig;
  readonly #bus: EventBus;
  readonly #cache = new PrincipalCache();

  constructor(options: { db: Kysely<Database>; config: CloudConfig; bus: EventBus }) {
    this.#db = options.db;
    this.#config = options.config;
    this.#bus = options.bus;
    this.#bus.onNotice((notice) => this.#cache.forget(notice));
    // Notices sent while the bus was away are lost: start afresh when it comes back (and when it goes).
    this.#bus.onConnectionChange(() => this.#cache.clear());
  }

  /**
   * Tells every node that tokens were deleted, after the deletion is committed. The cache of this node is
   * cleared before the answer, whatever the bus does; other nodes hear it over the bus.
   */
  async revoked(notice: NodeNotice): Promise<void> {
    this.#cache.forget(notice);
    await this.#bus.notify(notice);
  }

  /** Issues an access token and a refresh token for `subject`. */
  async issue(options: {
    subject: TokenSubject;
    clientId: string;
    lifetime?: TokenLifetime;
  }): Promise<TokenResponse> {
    const { subject, clientId, lifetime = {} } = options;
    const now = this.#config.clock();
    let expiresIn = lifetime.expiresIn ?? this.#config.accessTokenTtlSeconds;
    if (lifetime.expiresAt !== undefined)
      expiresIn = Math.max(1, Math.round((lifetime.expiresAt - now) / 1000));
    const accessToken = newToken();
    const refreshToken = newToken();
    const columns = subjectColumns(subject);
    await this.#db
      .insertInto("access_tokens")
      .values({
        token_hash: hashSecret(accessToken),
        ...columns,
        client_id: clientId,
        expires_at: expiresIn === 0 ? null : now + expiresIn * 1000,
        created_at: now,
      })
      .execute();
    await this.#db
      .insertInto("refresh_tokens")
      .values({
        token_hash: hashSecret(refreshToken),
        ...columns,
        client_id: clientId,
        expires_at: now + this.#config.refreshTokenTtlSeconds * 1000,
        created_at: now,
      })
      .execute();
    return {
      token_type: "bearer",
      access_token: accessToken,
      expires_in: expiresIn,
      refresh_token: refreshToken,
    };
  }

  /** Resolves a presented access token to its principal, or undefined when unknown, expired or orphaned. */
  async authenticate(token: string): Promise<Principal | undefined> {
    const hash = hashSecret(token);
    const now = this.#config.clock();
    const cached = this.#cache.get(hash, now);
    if (cached) return cached;
    const principal = await this.#read(hash, now);
    if (principal) this.#cache.set(hash, principal, now);
    return principal;
  }

  async #read(hash: string, now: number): Promise<Principal | undefined> {
    const row = await this.#db
      .selectFrom("access_tokens")
      .selectAll()
      .where("token_hash", "=", hash)
      .executeTakeFirst();
    if (!row || !safeEqual(row.token_hash, hash)) return undefined;
    if (row.expires_at !== null && row.expires_at <= now) return undefined;
    const info = { hash, clientId: row.client_id, expiresAt: row.expires_at };
    if (row.principal_kind === "user" && row.user_id) {
      const user = await this.#db
        .selectFrom("users")
        .select(["id", "username"])
        .where("id", "=", row.user_id)
        .executeTakeFirst();
      return user && { kind: "user", userId: user.id, username: user.username, token: info };
    }
    if (row.principal_kind === "customer" && row.customer_id) {
      const customer = await this.#db
        .selectFrom("customers")
        .select(["id", "email", "product_id"])
        .where("id", "=", row.customer_id)
        .executeTakeFirst();
      return (
        customer && {
          kind: "customer",
          customerId: customer.id,
          productId: customer.product_id,
          email: customer.email,
          token: info,
        }
      );
    }
    if (row.principal_kind === "product" && row.product_id !== null) {
      const product = await this.#db
        .selectFrom("products")
        .select("id")
        .where("id", "=", row.product_id)
        .executeTakeFirst();
      return product && { kind: "product", productId: product.id, token: info };
    }
    return undefined;
  }

  /** Deletes one access token by its value; true when it existed. */
  async revoke(token: string): Promise<boolean> {
    const hash = hashSecret(token);
    const result = await this.#db
      .deleteFrom("access_tokens")
      .where("token_hash", "=", hash)
      .executeTakeFirst();
    await this.revoked({ kind: "tokens-revoked", hashes: [hash] });
    return result.numDeletedRows > 0n;
  }

  /** Deletes the token that authenticated a request. */
  async revokeHash(hash: string): Promise<void> {
    await this.#db.deleteFrom("access_tokens").where("token_hash", "=", hash).execute();
    await this.revoked({ kind: "tokens-revoked", hashes: [hash] });
  }

  /** Deletes every access and refresh token of a user or a customer. */
  async revokeAll(subject: { userId: string } | { customerId: string }): Promise<void> {
    for (const table of ["access_tokens", "refresh_tokens"] as const) {
      let query = this.#db.deleteFrom(table);
      query =
        "userId" in subject
          ? query.where("user_id", "=", subject.userId)
          : query.where("customer_id", "=", subject.customerId);
      await query.execute();
    }
    await this.revoked({ kind: "subject-tokens-revoked", ...subject });
  }

  /**
   * Trades a refresh token for a new access + refresh token pair (the old refresh token is spent).
   * Only tokens issued to a registered OAuth client can be refreshed. @see spec/cloud-api.md §1.1
   */
  async refresh(options: {
    refreshToken: string;
    clientId: string;
    registeredClient: boolean;
  }): Promise<TokenResponse> {
    const hash = hashSecret(options.refreshToken);
    const row = await this.#db
      .selectFrom("refresh_tokens")
      .selectAll()
      .where("token_hash", "=", hash)
      .executeTakeFirst();
    const now = this.#config.clock();
    if (!row || row.client_id !== options.clientId || (row.expires_at !== null && row.expires_at <= now)) {
      throw new InvalidGrantError("The refresh token provided is invalid.");
    }
    if (!options.registeredClient)
      throw new InvalidGrantError("Refresh tokens only work for product tokens.");
    const deleted = await this.#db
      .deleteFrom("refresh_tokens")
      .where("token_hash", "=", hash)
      .executeTakeFirst();
    if (deleted.numDeletedRows === 0n) throw new InvalidGrantError("The refresh token provided is invalid.");
    let subject: TokenSubject;
    if (row.principal_kind === "customer" && row.customer_id && row.product_id !== null) {
      subject = { kind: "customer", customerId: row.customer_id, productId: row.product_id };
    } else if (row.principal_kind === "product" && row.product_id !== null) {
      subject = { kind: "product", productId: row.product_id };
    } else if (row.user_id) {
      subject = { kind: "user", userId: row.user_id };
    } else {
      throw new InvalidGrantError("The refresh token provided is invalid.");
    }
    return this.issue({ subject, clientId: options.clientId });
  }
}
