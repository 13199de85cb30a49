import type { Kysely } from "kysely";

import type { CloudConfig } from "../config.js";
import { InvalidGrantError } from "../errors.js";
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

/** Access and refresh tokens: issued as random secrets, stored only as SHA-256 hashes. */
export class TokenService {
  readonly #db: Kysely<Database>;
  readonly #config: CloudConfig;

  constructor(options: { db: Kysely<Database>; config: CloudConfig }) {
    this.#db = options.db;
    this.#config = options.config;
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
    const row = await this.#db
      .selectFrom("access_tokens")
      .selectAll()
      .where("token_hash", "=", hash)
      .executeTakeFirst();
    if (!row || !safeEqual(row.token_hash, hash)) return undefined;
    if (row.expires_at !== null && row.expires_at <= this.#config.clock()) return undefined;
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
    const result = await this.#db
      .deleteFrom("access_tokens")
      .where("token_hash", "=", hashSecret(token))
      .executeTakeFirst();
    return result.numDeletedRows > 0n;
  }

  /** Deletes the token that authenticated a request. */
  async revokeHash(hash: string): Promise<void> {
    await this.#db.deleteFrom("access_tokens").where("token_hash", "=", hash).execute();
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
