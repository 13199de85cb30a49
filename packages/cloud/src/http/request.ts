import type { FastifyRequest } from "fastify";

import { AppError, BadRequestError, ForbiddenError, InvalidTokenError, NotFoundError } from "../errors.js";
import { DEVICE_UNCLAIMED_EVENT } from "../events/model.js";
import type { Services } from "../services/index.js";
import type { Principal } from "../services/principal.js";
import type { Product } from "../services/products.js";
import { SIGN_IN_LINK_CLIENT_ID } from "../services/tokens.js";

/** A request body as a plain record; JSON, form and multipart bodies all end up here. */
export type Fields = Record<string, unknown>;

/** The body of a request as a record of fields, or an empty one when there is none. */
export function bodyOf(request: FastifyRequest): Fields {
  const body = request.body;
  if (body === undefined || body === null || body === "") return {};
  if (typeof body !== "object" || Array.isArray(body) || Buffer.isBuffer(body))
    throw new BadRequestError("request body must be a JSON object or a form");
  return body as Fields;
}

/** The query string as a record. */
export function queryOf(request: FastifyRequest): Fields {
  return (request.query ?? {}) as Fields;
}

/** An optional string field; numbers and booleans are accepted in their text form (form bodies have only text). */
export function optionalString(fields: Fields, name: string): string | undefined {
  const value = fields[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  throw new BadRequestError(`${name} must be a string`);
}

/** A required, non-empty string field. */
export function requiredString(fields: Fields, name: string): string {
  const value = optionalString(fields, name);
  if (value === undefined || value.length === 0) throw new BadRequestError(`${name} is required`);
  return value;
}

/** An optional boolean field: `true`/`false`, `"true"`/`"false"`, `1`/`0`. */
export function optionalBoolean(fields: Fields, name: string): boolean | undefined {
  const value = fields[name];
  if (value === undefined || value === null || value === "") return undefined;
  if (value === true || value === "true" || value === 1 || value === "1") return true;
  if (value === false || value === "false" || value === 0 || value === "0") return false;
  throw new BadRequestError(`${name} must be true or false`);
}

/** An optional non-negative integer field. */
export function optionalInteger(fields: Fields, name: string): number | undefined {
  const value = optionalString(fields, name);
  if (value === undefined || value === "") return undefined;
  if (!/^\d{1,15}$/.test(value)) throw new BadRequestError(`${name} must be a non-negative integer`);
  return Number(value);
}

/** A string path parameter. */
export function param(request: FastifyRequest, name: string): string {
  const value = (request.params as Record<string, string | undefined>)[name];
  if (value === undefined) throw new BadRequestError(`missing path parameter ${name}`);
  return value;
}

/**
 * The access token of a request: `Authorization: Bearer`, else the `access_token` query parameter, else
 * an `access_token` body field (which is then removed from the body). @see spec/cloud-api.md §1.2
 */
export function presentedToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header) {
    const match = /^bearer\s+(\S+)\s*$/i.exec(header);
    if (match?.[1]) return match[1];
  }
  const fromQuery = queryOf(request).access_token;
  if (typeof fromQuery === "string" && fromQuery.length > 0) return fromQuery;
  const body = request.body;
  if (body && typeof body === "object" && !Array.isArray(body) && !Buffer.isBuffer(body)) {
    const fields = body as Fields;
    const fromBody = fields.access_token;
    delete fields.access_token;
    if (typeof fromBody === "string" && fromBody.length > 0) return fromBody;
  }
  return undefined;
}

/** The principal behind a request's token; throws the spec's 400/401 when it is missing or invalid. */
export async function authenticate(services: Services, request: FastifyRequest): Promise<Principal> {
  const token = presentedToken(request);
  if (!token) throw new AppError("TOKEN_MISSING", "The access token was not found");
  const principal = await services.tokens.authenticate(token);
  // A sign-in link's token is only for the token exchange that spends it.
  if (!principal || principal.token.clientId === SIGN_IN_LINK_CLIENT_ID) throw new InvalidTokenError();
  return principal;
}

/** Rejects product (API user) tokens on endpoints meant for people. @see spec/cloud-api.md §6 */
export function requirePerson(
  principal: Principal,
): asserts principal is Exclude<Principal, { kind: "product" }> {
  if (principal.kind === "product")
    throw new AppError("API_USER_FORBIDDEN", "API users are not allowed to call this endpoint");
}

/** Rejects everyone but users (developers, team members). */
export function requireUser(principal: Principal): asserts principal is Extract<Principal, { kind: "user" }> {
  requirePerson(principal);
  if (principal.kind !== "user") throw new ForbiddenError("Customer tokens cannot call this endpoint");
}

/** Loads the `:productIdOrSlug` of the path. */
export async function productParam(services: Services, request: FastifyRequest): Promise<Product> {
  const product = await services.products.find(param(request, "productIdOrSlug"));
  if (!product) throw new NotFoundError("Product not found");
  return product;
}

/**
 * The product of the path, for a caller who administers it (team member or the product's own token).
 * Customers get 403 (they may never call product endpoints); anyone else gets the same 404 as for a
 * product that does not exist. @see spec/cloud-api.md §1.3
 */
export async function administeredProduct(
  services: Services,
  request: FastifyRequest,
  principal: Principal,
): Promise<Product> {
  if (principal.kind === "customer")
    throw new ForbiddenError("Customer tokens cannot call product endpoints");
  const product = await productParam(services, request);
  if (!(await services.products.canAdminister(principal, product.id)))
    throw new NotFoundError("Product not found");
  return product;
}

/** The client IP a request came from (the token lock-out and rate limits are per IP). */
export function clientIp(request: FastifyRequest): string {
  return request.ip;
}

/**
 * Tells the node holding a device's connection that its owner or product changed, so that its events
 * route to the right streams. Best effort: an offline device has nothing to refresh.
 */
export async function deviceChanged(services: Services, deviceId: string): Promise<void> {
  await services.bus.requestDevice({
    deviceId: deviceId.toLowerCase(),
    command: { kind: "refresh" },
    timeoutMs: 2000,
  });
}

/**
 * Tells a device's former owner and its product that the device was unclaimed (streams and webhooks).
 * @see docs/webhooks.md "Claim lifecycle events"
 */
export async function announceUnclaimed(
  services: Services,
  device: {
    id: string;
    owner_user_id: string | null;
    owner_customer_id: string | null;
    product_id: number | null;
  },
  reason: "unclaimed" | "removed_from_product",
): Promise<void> {
  if (device.owner_user_id === null && device.owner_customer_id === null) return;
  await services.bus.publish({
    name: DEVICE_UNCLAIMED_EVENT,
    data: JSON.stringify({
      device_id: device.id,
      reason,
      owner:
        device.owner_user_id !== null
          ? { kind: "user", user_id: device.owner_user_id }
          : { kind: "customer", customer_id: device.owner_customer_id, product_id: device.product_id },
    }),
    ttl: 60,
    publishedAt: new Date(services.config.clock()).toISOString(),
    coreid: device.id,
    isPublic: false,
    ownerUserId: device.owner_user_id,
    ownerCustomerId: device.owner_customer_id,
    productId: device.product_id,
  });
}
