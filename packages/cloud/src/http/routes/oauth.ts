import type { FastifyInstance, FastifyRequest } from "fastify";

import {
  AppError,
  BadRequestError,
  InvalidClientError,
  InvalidGrantError,
  NotFoundError,
} from "../../errors.js";
import type { Services } from "../../services/index.js";
import type { TokenLifetime } from "../../services/tokens.js";
import { SIGN_IN_LINK_CLIENT_ID } from "../../services/tokens.js";
import type { Fields } from "../request.js";
import {
  authenticate,
  bodyOf,
  clientIp,
  optionalInteger,
  optionalString,
  param,
  requiredString,
} from "../request.js";
import { findBadText } from "../text-input.js";

/** Client credentials from `Authorization: Basic` or the `client_id`/`client_secret` body fields. @see spec/cloud-api.md §1.1 */
export function clientCredentials(
  request: FastifyRequest,
  fields: Fields,
): { id: string; secret: string } | undefined {
  const header = request.headers.authorization;
  const match = header ? /^basic\s+(\S+)\s*$/i.exec(header) : null;
  if (match?.[1]) {
    const decoded = Buffer.from(match[1], "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) throw new InvalidClientError("Malformed Basic authorization header");
    // RFC 6749 §2.3.1 form-encodes id and secret before Basic encoding; a bad escape is a bad header.
    let credentials: { id: string; secret: string };
    try {
      credentials = {
        id: decodeURIComponent(decoded.slice(0, colon)),
        secret: decodeURIComponent(decoded.slice(colon + 1)),
      };
    } catch {
      throw new InvalidClientError("Malformed Basic authorization header");
    }
    // The header is text input too (NUL would fail a PostgreSQL query): same policy as bodies.
    if (findBadText(credentials)) throw new InvalidClientError("Malformed Basic authorization header");
    return credentials;
  }
  const id = optionalString(fields, "client_id");
  if (id === undefined) return undefined;
  return { id, secret: optionalString(fields, "client_secret") ?? "" };
}

/** RFC 8693 §2.1 grant type, and §3 token type of an access token. */
const TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";

/** Longest `expires_in` accepted: 100 years. */
const MAX_EXPIRES_IN_SECONDS = 3_155_760_000;
/** Latest `expires_at` accepted (later ones overflow dates). */
const LATEST_EXPIRES_AT = Date.parse("9999-12-31T23:59:59.999Z");

/** `expires_in` (seconds, 0 = never) or `expires_at` (ISO date) of a token request. */
export function requestedLifetime(fields: Fields): TokenLifetime {
  const expiresIn = optionalInteger(fields, "expires_in");
  // Beyond this an expiry is not a date any more (and 0 already means never).
  if (expiresIn !== undefined && expiresIn > MAX_EXPIRES_IN_SECONDS)
    throw new BadRequestError(`expires_in must be at most ${MAX_EXPIRES_IN_SECONDS} seconds; 0 means never`);
  const expiresAtText = optionalString(fields, "expires_at");
  let expiresAt: number | undefined;
  if (expiresAtText) {
    expiresAt = Date.parse(expiresAtText);
    if (Number.isNaN(expiresAt)) throw new BadRequestError("expires_at must be an ISO-8601 date");
    if (expiresAt > LATEST_EXPIRES_AT) throw new BadRequestError("expires_at must be before the year 10000");
  }
  return { expiresIn, expiresAt };
}

/** `POST /oauth/token` and the access-token endpoints. @see spec/cloud-api.md §1 */
export function registerOAuthRoutes(app: FastifyInstance, services: Services): void {
  const { accounts, tokens, products, lockout, config } = services;

  app.post(
    "/oauth/token",
    { config: { rateLimit: { max: config.rateLimits.tokenMax } } },
    async (request, reply) => {
      const ip = clientIp(request);
      const locked = (ms: number) => {
        void reply.header("retry-after", Math.ceil(ms / 1000));
        return new AppError(
          "LOCKED_OUT",
          `Too many failed attempts; try again in ${Math.ceil(ms / 60_000)} minutes`,
        );
      };
      const blockedMs = await lockout.blockedFor(ip);
      if (blockedMs > 0) throw locked(blockedMs);
      const fields = bodyOf(request);
      // Reserve the attempt before any secret is checked, so that parallel guesses cannot all get in.
      const reservation = await lockout.reserve(ip);
      if (!reservation.allowed) throw locked(reservation.blockedMs);
      try {
        const result = await grant(request, fields);
        await lockout.recordSuccess(ip);
        return result;
      } catch (error) {
        if (!(
          error instanceof AppError &&
          (error.code === "INVALID_GRANT" || error.code === "INVALID_CLIENT")
        ))
          await lockout.release(ip);
        throw error;
      }
    },
  );

  async function grant(request: FastifyRequest, fields: Fields) {
    const grantType = requiredString(fields, "grant_type");
    const credentials = clientCredentials(request, fields);
    const lifetime = requestedLifetime(fields);
    const client = credentials && (await products.getClient(credentials.id));
    // A registered client must prove its secret; an unregistered id is fine for the user password grant.
    if (client && credentials && !(await products.authenticateClient(credentials.id, credentials.secret)))
      throw new InvalidClientError();
    switch (grantType) {
      case "password": {
        const username = requiredString(fields, "username");
        const password = requiredString(fields, "password");
        if (client?.product_id != null) {
          // Simple auth: an app logs a product customer in with the product's client. @see spec/cloud-api.md §7.1
          const customer = await accounts.verifyCustomer({
            productId: client.product_id,
            email: username,
            password,
          });
          if (!customer) throw new InvalidGrantError("User credentials are invalid");
          return tokens.issue({
            subject: { kind: "customer", customerId: customer.id, productId: customer.product_id },
            clientId: client.id,
            lifetime,
          });
        }
        const user = await accounts.verifyUser({ username, password });
        if (!user) throw new InvalidGrantError("User credentials are invalid");
        return tokens.issue({
          subject: { kind: "user", userId: user.id },
          clientId: credentials?.id ?? "particle",
          lifetime,
        });
      }
      case "client_credentials": {
        if (!client || client.product_id === null) throw new InvalidClientError();
        if (client.scope !== null)
          throw new AppError("INVALID_SCOPE", "This client may only create customers");
        const scope = optionalString(fields, "scope");
        if (scope === undefined || scope === "") {
          return tokens.issue({
            subject: { kind: "product", productId: client.product_id },
            clientId: client.id,
            lifetime,
          });
        }
        const match = /^customer=(.+)$/.exec(scope);
        if (!match?.[1]) throw new AppError("INVALID_SCOPE", "scope must be customer=<email>");
        const customer = await accounts.findCustomer(client.product_id, match[1]);
        if (!customer) throw new InvalidGrantError("Customer not found");
        return tokens.issue({
          subject: { kind: "customer", customerId: customer.id, productId: customer.product_id },
          clientId: client.id,
          lifetime,
        });
      }
      case "refresh_token": {
        if (!credentials) throw new InvalidClientError();
        return tokens.refresh({
          refreshToken: requiredString(fields, "refresh_token"),
          clientId: credentials.id,
          registeredClient: client !== undefined,
        });
      }
      case TOKEN_EXCHANGE_GRANT: {
        // Only a sign-in link's token is exchanged, once: deleting it decides who wins a race. @see RFC 8693 §2.1
        const subjectToken = requiredString(fields, "subject_token");
        if (requiredString(fields, "subject_token_type") !== ACCESS_TOKEN_TYPE)
          throw new BadRequestError(`subject_token_type must be ${ACCESS_TOKEN_TYPE}`);
        const principal = await tokens.authenticate(subjectToken);
        if (
          principal?.kind !== "user" ||
          principal.token.clientId !== SIGN_IN_LINK_CLIENT_ID ||
          !(await tokens.revoke(subjectToken))
        )
          throw new InvalidGrantError("The sign-in link is invalid, already used or expired");
        const issued = await tokens.issue({
          subject: { kind: "user", userId: principal.userId },
          clientId: credentials?.id ?? "particle",
          lifetime,
        });
        return { ...issued, issued_token_type: ACCESS_TOKEN_TYPE };
      }
      default:
        throw new AppError("UNSUPPORTED_GRANT_TYPE", `Unsupported grant type: ${grantType}`);
    }
  }

  app.get("/v1/access_tokens/current", async (request) => {
    const principal = await authenticate(services, request);
    return {
      expires_at:
        principal.token.expiresAt === null ? null : new Date(principal.token.expiresAt).toISOString(),
      client: principal.token.clientId,
      client_id: principal.token.clientId,
      scopes: principal.kind === "customer" ? [`customer=${principal.email}`] : [],
      orgs: [],
    };
  });

  app.delete("/v1/access_tokens/current", async (request) => {
    const principal = await authenticate(services, request);
    await tokens.revokeHash(principal.token.hash);
    return { ok: true };
  });

  app.delete("/v1/access_tokens", async (request) => {
    // The router ignores trailing slashes, but `/v1/access_tokens/` names the empty token, not "all of them".
    if ((request.raw.url ?? "").split("?")[0]?.endsWith("/"))
      throw new NotFoundError("Access token not found");
    const principal = await authenticate(services, request);
    if (principal.kind === "user") await tokens.revokeAll({ userId: principal.userId });
    else if (principal.kind === "customer") await tokens.revokeAll({ customerId: principal.customerId });
    else await tokens.revokeHash(principal.token.hash);
    return { ok: true };
  });

  // Possession of the token is the credential: the CLI sends this with no Authorization header.
  // @see spec/cloud-api.md §1.4
  app.delete(
    "/v1/access_tokens/:token",
    { config: { rateLimit: { max: config.rateLimits.sensitiveMax } } },
    async (request) => {
      const token = param(request, "token");
      if (!(await tokens.revoke(token))) throw new NotFoundError("Access token not found");
      return { ok: true };
    },
  );
}
