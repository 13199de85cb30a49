import type { Kysely } from "kysely";

import type { CloudConfig } from "../config.js";
import { AppError, BadRequestError, NotFoundError } from "../errors.js";
import { hashPassword, newId, UNUSABLE_PASSWORD_HASH, verifyPassword } from "../security.js";
import { isUniqueViolation } from "../storage/database.js";
import type { CustomersTable, Database, UsersTable } from "../storage/schema.js";
import type { TokenService } from "./tokens.js";

/** Shortest password accepted for users and customers. */
export const MIN_PASSWORD_LENGTH = 8;

function checkPassword(password: string): void {
  if (password.length < MIN_PASSWORD_LENGTH) {
    throw new BadRequestError(`password must be at least ${MIN_PASSWORD_LENGTH} characters`);
  }
}

/** Users (developers, product team members) and product customers, with their password checks. */
export class AccountService {
  readonly #db: Kysely<Database>;
  readonly #config: CloudConfig;
  readonly #tokens: TokenService;

  constructor(options: { db: Kysely<Database>; config: CloudConfig; tokens: TokenService }) {
    this.#db = options.db;
    this.#config = options.config;
    this.#tokens = options.tokens;
  }

  /** Creates a user; usernames are e-mail addresses, compared case-insensitively. */
  async createUser(options: { username: string; password: string }): Promise<UsersTable> {
    const username = options.username.trim().toLowerCase();
    if (username.length > 254 || !/^[^\s@]+@[^\s@]+$/.test(username))
      throw new BadRequestError("username must be an email address (at most 254 characters)");
    checkPassword(options.password);
    const existing = await this.#db
      .selectFrom("users")
      .select("id")
      .where("username", "=", username)
      .executeTakeFirst();
    if (existing) throw new AppError("CONFLICT", "username must be unique");
    const row: UsersTable = {
      id: newId(),
      username,
      password_hash: await hashPassword(options.password, this.#config.passwordHashCost),
      created_at: this.#config.clock(),
    };
    try {
      await this.#db.insertInto("users").values(row).execute();
    } catch (error) {
      // The same sign-up arriving twice at once: the second insert loses, with the same answer as above.
      if (isUniqueViolation(error)) throw new AppError("CONFLICT", "username must be unique");
      throw error;
    }
    return row;
  }

  /** The user with these credentials, or undefined; takes the same time whether or not the user exists. */
  async verifyUser(options: { username: string; password: string }): Promise<UsersTable | undefined> {
    const user = await this.#db
      .selectFrom("users")
      .selectAll()
      .where("username", "=", options.username.trim().toLowerCase())
      .executeTakeFirst();
    const ok = await verifyPassword(options.password, user?.password_hash ?? UNUSABLE_PASSWORD_HASH);
    return ok ? user : undefined;
  }

  /** Looks a user up by id. */
  getUser(id: string): Promise<UsersTable | undefined> {
    return this.#db.selectFrom("users").selectAll().where("id", "=", id).executeTakeFirst();
  }

  /** Creates a customer of a product; with no password it is a password-less "shadow" customer. @see spec/cloud-api.md §2 */
  async createCustomer(options: {
    productId: number;
    email: string;
    password: string | undefined;
  }): Promise<CustomersTable> {
    const email = options.email.trim().toLowerCase();
    if (email.length === 0 || email.length > 254) throw new BadRequestError("email is required");
    if (options.password !== undefined) checkPassword(options.password);
    const existing = await this.findCustomer(options.productId, email);
    if (existing) throw new AppError("CONFLICT", "Customer already exists");
    const row: CustomersTable = {
      id: newId(),
      product_id: options.productId,
      email,
      password_hash:
        options.password === undefined
          ? null
          : await hashPassword(options.password, this.#config.passwordHashCost),
      created_at: this.#config.clock(),
    };
    try {
      await this.#db.insertInto("customers").values(row).execute();
    } catch (error) {
      if (isUniqueViolation(error)) throw new AppError("CONFLICT", "Customer already exists");
      throw error;
    }
    return row;
  }

  /** A product's customer by e-mail (or the id it was created with), or undefined. */
  findCustomer(productId: number, emailOrId: string): Promise<CustomersTable | undefined> {
    const key = emailOrId.trim().toLowerCase();
    return this.#db
      .selectFrom("customers")
      .selectAll()
      .where("product_id", "=", productId)
      .where((eb) => eb.or([eb("email", "=", key), eb("id", "=", emailOrId)]))
      .executeTakeFirst();
  }

  /** The customer with these credentials, or undefined; shadow customers never log in with a password. */
  async verifyCustomer(options: {
    productId: number;
    email: string;
    password: string;
  }): Promise<CustomersTable | undefined> {
    const customer = await this.findCustomer(options.productId, options.email);
    const ok = await verifyPassword(options.password, customer?.password_hash ?? UNUSABLE_PASSWORD_HASH);
    return ok ? customer : undefined;
  }

  /** Sets a customer's password. */
  async setCustomerPassword(options: { productId: number; email: string; password: string }): Promise<void> {
    checkPassword(options.password);
    const customer = await this.findCustomer(options.productId, options.email);
    if (!customer) throw new NotFoundError("Customer not found");
    const hash = await hashPassword(options.password, this.#config.passwordHashCost);
    await this.#db
      .updateTable("customers")
      .set({ password_hash: hash })
      .where("id", "=", customer.id)
      .execute();
  }

  /**
   * Deletes a customer with its tokens and pending claim codes, and releases its devices (they stay in
   * the product). One transaction. @see spec/cloud-api.md §2 (Delete)
   */
  async deleteCustomer(options: { productId: number; email: string }): Promise<void> {
    const customer = await this.findCustomer(options.productId, options.email);
    if (!customer) throw new NotFoundError("Customer not found");
    const now = this.#config.clock();
    await this.#db.transaction().execute(async (trx) => {
      await trx.deleteFrom("access_tokens").where("customer_id", "=", customer.id).execute();
      await trx.deleteFrom("refresh_tokens").where("customer_id", "=", customer.id).execute();
      await trx
        .updateTable("claim_codes")
        .set({ revoked_at: now })
        .where("customer_id", "=", customer.id)
        .where("used_at", "is", null)
        .execute();
      await trx
        .updateTable("devices")
        .set({ owner_customer_id: null, claimed_at: null, updated_at: now })
        .where("owner_customer_id", "=", customer.id)
        .execute();
      await trx.deleteFrom("customers").where("id", "=", customer.id).execute();
    });
    await this.#tokens.revoked({ kind: "subject-tokens-revoked", customerId: customer.id });
  }
}
