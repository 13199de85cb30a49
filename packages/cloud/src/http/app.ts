import { parse as parseQueryString } from "node:querystring";
import formbody from "@fastify/formbody";
import multipart from "@fastify/multipart";
import rateLimit from "@fastify/rate-limit";
import type { FastifyBaseLogger, FastifyError, FastifyInstance, FastifyReply } from "fastify";
import Fastify, { LogController } from "fastify";

import { AppError, renderError, toAppError } from "../errors.js";
import type { ServerKey } from "../gateway/server-key.js";
import type { Services } from "../services/index.js";
import { registerConsoleRoutes } from "./console.js";
import { registerClaimRoutes } from "./routes/claims.js";
import { registerCustomerRoutes } from "./routes/customers.js";
import { registerDeviceRoutes } from "./routes/devices.js";
import { registerEventRoutes } from "./routes/events.js";
import { registerOAuthRoutes } from "./routes/oauth.js";
import { registerProductDeviceRoutes } from "./routes/product-devices.js";
import { registerProductRoutes } from "./routes/products.js";
import type { GatewayAddress } from "./routes/roost.js";
import { registerClaimStatusRoutes, registerRoostRoutes } from "./routes/roost.js";
import { registerTransferRoutes } from "./routes/transfers.js";
import { registerUserRoutes } from "./routes/users.js";

/** Largest file accepted by the device import (`POST /v1/products/:p/devices` with a file). */
const MAX_IMPORT_FILE_BYTES = 1_048_576;

/** Turns framework errors (body parsing, limits) into Roost's codes; everything else stays as thrown. */
function fromFastifyError(error: FastifyError | AppError | Error): AppError {
  if (error instanceof AppError) return error;
  const code = (error as FastifyError).code;
  switch (code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
    case "FST_REQ_FILE_TOO_LARGE":
    case "FST_FILES_LIMIT":
    case "FST_PARTS_LIMIT":
      return new AppError("PAYLOAD_TOO_LARGE", "Request body is too large");
    case "FST_ERR_CTP_INVALID_JSON_BODY":
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new AppError("MALFORMED_BODY", "Request body is not valid JSON");
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
    case "FST_INVALID_MULTIPART_CONTENT_TYPE":
      return new AppError("BAD_REQUEST", error.message);
    default:
      break;
  }
  if (error instanceof SyntaxError) return new AppError("MALFORMED_BODY", "Request body is not valid JSON");
  // A malformed multipart body surfaces as busboy's plain errors.
  if (/^Multipart: |unexpected end of multipart data|^Boundary required/i.test(error.message)) {
    return new AppError("MALFORMED_BODY", "Request body is not valid multipart/form-data");
  }
  const status = (error as FastifyError).statusCode;
  if (status !== undefined && status >= 400 && status < 500)
    return new AppError("BAD_REQUEST", error.message);
  return toAppError(error);
}

/** Builds the HTTP API of one cloud node over its services. The caller listens (or injects requests). */
export async function createHttpApp(options: {
  services: Services;
  logger: FastifyBaseLogger;
  serverKey: ServerKey;
  gateway: GatewayAddress;
  /** Folder of the built web console, served at `/console/`; none when undefined. */
  consoleDir?: string | undefined;
}): Promise<FastifyInstance> {
  const { services } = options;
  const { config } = services;
  const app = Fastify({
    loggerInstance: options.logger,
    bodyLimit: config.bodyLimitBytes,
    logController: new LogController({ disableRequestLogging: true }),
    // Device IDs and names are matched exactly; `/v1/devices/` and `/v1/devices` are the same route.
    routerOptions: { ignoreTrailingSlash: true },
    // Undecodable URLs and over-long path parameters get the usual error shape too.
    frameworkErrors: (error, _request, reply) => {
      const { status, body } = renderError(fromFastifyError(error));
      void (reply as FastifyReply).code(status).send(body);
    },
  });

  app.setErrorHandler((rawError, request, reply) => {
    const error = fromFastifyError(rawError as FastifyError);
    const { status, body: rendered } = renderError(error);
    // The token endpoint speaks OAuth for every 400 (node-oauth2-server's invalid_request). @see spec/cloud-api.md §6
    const oauth =
      status === 400 && request.routeOptions.url === "/oauth/token" && !("error_description" in rendered);
    const body = oauth ? { error: "invalid_request", error_description: error.message } : rendered;
    if (status >= 500) request.log.error({ err: rawError, url: request.url }, "request failed");
    else request.log.debug({ code: error.code, url: request.url }, error.message);
    void reply.code(status).send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    const { status, body } = renderError(
      new AppError("ROUTE_NOT_FOUND", `Not found: ${request.method} ${request.url.split("?")[0]}`),
    );
    void reply.code(status).send(body);
  });

  await app.register(rateLimit, {
    global: true,
    max: config.rateLimits.apiMax,
    timeWindow: config.rateLimits.windowMs,
    errorResponseBuilder: (_request, context) =>
      new AppError("RATE_LIMITED", `Too many requests; retry in ${context.after}`),
  });
  await app.register(formbody);
  await app.register(multipart, {
    attachFieldsToBody: "keyValues",
    limits: { fileSize: MAX_IMPORT_FILE_BYTES, files: 1, fields: 20 },
  });
  // Anything else (no or odd content type): JSON when it looks like JSON, else form encoding.
  app.addContentTypeParser("*", { parseAs: "string" }, (request, body, done) => {
    const text = typeof body === "string" ? body : body.toString("utf8");
    const trimmed = text.trim();
    if (trimmed.length === 0) return done(null, undefined);
    // A declared type other than text/plain (XML, binary, …) is not guessed at: a clear error instead.
    const type = (request.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
    if (type !== "" && type !== "text/plain")
      return done(
        new AppError("BAD_REQUEST", `Unsupported content type ${type}: send JSON or a form`),
        undefined,
      );
    if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
      try {
        done(null, JSON.parse(trimmed));
      } catch {
        done(new AppError("MALFORMED_BODY", "Request body is not valid JSON"), undefined);
      }
      return;
    }
    done(null, { ...parseQueryString(text) });
  });

  registerOAuthRoutes(app, services);
  registerUserRoutes(app, services);
  registerProductRoutes(app, services);
  registerCustomerRoutes(app, services);
  registerClaimRoutes(app, services);
  registerDeviceRoutes(app, services);
  registerProductDeviceRoutes(app, services);
  registerEventRoutes(app, services);
  registerRoostRoutes(app, { serverKey: options.serverKey, gateway: options.gateway });
  registerClaimStatusRoutes(app, services);
  registerTransferRoutes(app, services);
  if (options.consoleDir !== undefined) await registerConsoleRoutes(app, { root: options.consoleDir });
  return app;
}
