import multipart from "@fastify/multipart";
import rateLimit from "@fastify/rate-limit";
import type { FastifyRateLimitStoreCtor } from "@fastify/rate-limit";
import type { FastifyBaseLogger, FastifyError, FastifyInstance, FastifyReply } from "fastify";
import Fastify, { LogController } from "fastify";

import type { StreamSlots } from "../cluster/limits.js";
import { AppError, renderError, toAppError } from "../errors.js";
import type { ServerKey } from "../gateway/server-key.js";
import type { Services } from "../services/index.js";
import { isUniqueViolation } from "../storage/database.js";
import { clientErrorHandler, httpServerOptions, limitConnections } from "./connection-limits.js";
import { registerConsoleRoutes } from "./console.js";
import { registerClaimRoutes } from "./routes/claims.js";
import { registerCustomerRoutes } from "./routes/customers.js";
import { registerDeviceRoutes } from "./routes/devices.js";
import { registerEventRoutes } from "./routes/events.js";
import { registerHealthRoutes } from "./routes/health.js";
import { registerOAuthRoutes } from "./routes/oauth.js";
import {
  IMPORT_ROUTE,
  MAX_IMPORT_FIELD_BYTES,
  MAX_IMPORT_FILE_BYTES,
  registerProductDeviceRoutes,
} from "./routes/product-devices.js";
import { registerProductRoutes } from "./routes/products.js";
import type { GatewayAddress } from "./routes/roost.js";
import { registerClaimStatusRoutes, registerRoostRoutes } from "./routes/roost.js";
import { registerTransferRoutes } from "./routes/transfers.js";
import { registerUserRoutes } from "./routes/users.js";
import { registerWebhookRoutes } from "./routes/webhooks.js";
import { BadTextError, checkUrl, decodeBody, findBadText, parseForm } from "./text-input.js";

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
  // A race this code does not resolve itself (two inserts of one key at once) is the caller's conflict.
  if (isUniqueViolation(error))
    return new AppError("CONFLICT", "The request conflicts with a concurrent change; try again");
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
  /** Limits shared by the nodes of a deployment. */
  limits: {
    streamSlots: StreamSlots;
    /** The rate-limit store shared by the nodes; without it, counts stay in this node's memory. */
    rateLimitStore?: FastifyRateLimitStoreCtor | undefined;
  };
  /** Folder of the built web console, served at `/console/`; none when undefined. */
  consoleDir?: string | undefined;
}): Promise<FastifyInstance> {
  const { services } = options;
  const { config } = services;
  const app = Fastify({
    loggerInstance: options.logger,
    bodyLimit: config.bodyLimitBytes,
    // No request is held forever: Fastify 5 leaves these off (0) by default. See docs/security.md.
    requestTimeout: config.http.requestTimeoutMs,
    keepAliveTimeout: config.http.keepAliveTimeoutMs,
    connectionTimeout: config.http.idleTimeoutMs,
    http: httpServerOptions(config.http),
    clientErrorHandler,
    logController: new LogController({ disableRequestLogging: true }),
    // Device IDs and names are matched exactly; `/v1/devices/` and `/v1/devices` are the same route.
    routerOptions: { ignoreTrailingSlash: true },
    // Undecodable URLs and over-long path parameters get the usual error shape too.
    frameworkErrors: (error, request, reply) => {
      const { status, body } = renderError(fromFastifyError(error));
      if (!request.raw.complete) void (reply as FastifyReply).header("connection", "close");
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
    // A body left unread (refused before or while reading it) is not drained: the connection closes.
    if (!request.raw.complete) void reply.header("connection", "close");
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

  limitConnections(app, config.http);
  await app.register(rateLimit, {
    global: true,
    max: config.rateLimits.apiMax,
    timeWindow: config.rateLimits.windowMs,
    // Across nodes when the database is shared; this node's memory otherwise.
    ...(options.limits.rateLimitStore ? { store: options.limits.rateLimitStore } : {}),
    errorResponseBuilder: (_request, context) =>
      new AppError("RATE_LIMITED", `Too many requests; retry in ${context.after}`),
  });
  // The text-input policy at the edge: the URL here, bodies in the parsers and preValidation below.
  app.addHook("onRequest", (request, _reply, done) => {
    try {
      checkUrl(request.raw.url ?? "/");
    } catch (error) {
      return done(error as Error);
    }
    done();
  });
  app.addHook("preValidation", (request, _reply, done) => {
    if (findBadText(request.body)) return done(new BadTextError("The request body"));
    done();
  });
  // JSON and forms are decoded as strict UTF-8 (Fastify's and formbody's parsers would replace bad bytes).
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (request, body, done) => {
    let text: string;
    try {
      text = decodeBody(body as Buffer);
    } catch (error) {
      return done(error as Error, undefined);
    }
    void parseJson(request, text, done);
  });
  app.addContentTypeParser(
    "application/x-www-form-urlencoded",
    { parseAs: "buffer" },
    (_request, body, done) => {
      try {
        done(null, parseForm(decodeBody(body as Buffer)));
      } catch (error) {
        done(error as Error, undefined);
      }
    },
  );
  // Multipart is for the device import only; anywhere else it is refused before a byte of it is read.
  app.addHook("onRequest", (request, _reply, done) => {
    const type = request.headers["content-type"] ?? "";
    if (/^\s*multipart\//i.test(type) && request.routeOptions.url !== IMPORT_ROUTE)
      return done(
        new AppError("BAD_REQUEST", "This endpoint does not accept multipart bodies: send JSON or a form"),
      );
    done();
  });
  // Anything else (no or odd content type): JSON when it looks like JSON, else form encoding.
  app.addContentTypeParser("*", { parseAs: "buffer" }, (request, body, done) => {
    const bytes = body as Buffer;
    // A declared type other than text/plain (XML, binary, …) is not guessed at: a clear error instead.
    const type = (request.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
    if (type !== "" && type !== "text/plain") {
      if (bytes.toString("latin1").trim().length === 0) return done(null, undefined);
      return done(
        new AppError("BAD_REQUEST", `Unsupported content type ${type}: send JSON or a form`),
        undefined,
      );
    }
    let text: string;
    try {
      text = decodeBody(bytes);
    } catch (error) {
      return done(error as Error, undefined);
    }
    const trimmed = text.trim();
    if (trimmed.length === 0) return done(null, undefined);
    if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
      try {
        done(null, JSON.parse(trimmed));
      } catch {
        done(new AppError("MALFORMED_BODY", "Request body is not valid JSON"), undefined);
      }
      return;
    }
    try {
      done(null, parseForm(text));
    } catch (error) {
      done(error as Error, undefined);
    }
  });

  registerOAuthRoutes(app, services);
  registerUserRoutes(app, services);
  registerProductRoutes(app, services);
  registerCustomerRoutes(app, services);
  registerClaimRoutes(app, services);
  registerDeviceRoutes(app, services);
  // The import reads its parts itself (readUpload), so that a file over the limit ends the request there.
  // The multipart plugin lives in a context of its own with the product device routes: its hooks (three
  // per request) are not run by every other route, which refuse multipart bodies above anyway.
  await app.register(async (products) => {
    await products.register(multipart, {
      limits: {
        fileSize: MAX_IMPORT_FILE_BYTES,
        files: 1,
        fields: 20,
        parts: 21,
        fieldSize: MAX_IMPORT_FIELD_BYTES,
        headerPairs: 20,
      },
    });
    registerProductDeviceRoutes(products, services);
  });
  registerEventRoutes(app, services, { streamSlots: options.limits.streamSlots });
  registerRoostRoutes(app, { serverKey: options.serverKey, gateway: options.gateway });
  registerHealthRoutes(app, services);
  registerClaimStatusRoutes(app, services);
  registerTransferRoutes(app, services);
  registerWebhookRoutes(app, services);
  if (options.consoleDir !== undefined) await registerConsoleRoutes(app, { root: options.consoleDir });
  return app;
}
