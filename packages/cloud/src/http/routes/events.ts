import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

import type { StreamSlots } from "../../cluster/limits.js";
import { AppError, BadRequestError, ForbiddenError } from "../../errors.js";
import type { CloudEvent } from "../../events/model.js";
import {
  API_COREID,
  DEFAULT_EVENT_TTL,
  MAX_EVENT_DATA_BYTES,
  MAX_EVENT_NAME_LENGTH,
} from "../../events/model.js";
import type { Services } from "../../services/index.js";
import type { EventStreamSink, StreamFilter } from "../event-streams.js";
import { EventStreams, streamFilters } from "../event-streams.js";
import {
  administeredProduct,
  authenticate,
  bodyOf,
  clientIp,
  optionalBoolean,
  optionalInteger,
  optionalString,
  param,
  requiredString,
  requirePerson,
} from "../request.js";

/** A stream stops being fed when this many bytes wait unsent: a client that reads too slowly is dropped. */
const MAX_BUFFERED_SSE_BYTES = 1_048_576;

/** The prefix of a wildcard route (`/…/events/*`), with or without embedded slashes. @see spec/cloud-api.md §5.1 */
function prefixOf(request: FastifyRequest): string {
  const raw = (request.params as Record<string, string | undefined>)["*"] ?? "";
  return raw.replace(/^\/+/, "");
}

/** Server-sent event streams and publishing. @see spec/cloud-api.md §5 */
export function registerEventRoutes(
  app: FastifyInstance,
  services: Services,
  options: { streamSlots: StreamSlots },
): void {
  const { bus, config, devices } = services;
  const slots = options.streamSlots;
  const openStreams = new Set<FastifyReply["raw"]>();
  // One subscription to the bus for every stream of the node: each event goes to the streams filed under its
  // scopes (event-streams.ts), not to a subscription per open stream.
  const streams = new EventStreams();
  const unsubscribe = bus.subscribe((event) => streams.deliver(event));
  // Streams never end on their own: end them when the server closes, or close would wait for ever.
  app.addHook("preClose", (done) => {
    for (const raw of openStreams) raw.destroy();
    done();
  });
  app.addHook("onClose", (_instance, done) => {
    unsubscribe();
    done();
  });

  /** Opens a stream: `:ok`, then matching events, with keep-alives during silence. */
  async function stream(
    request: FastifyRequest,
    reply: FastifyReply,
    filter: StreamFilter & { readonly prefix: string },
  ): Promise<void> {
    const { prefix } = filter;
    const ip = clientIp(request);
    // The cap holds across every node of the deployment (the slots live in the shared database).
    if (!(await slots.acquire(ip)))
      throw new AppError("RATE_LIMITED", `At most ${config.sseMaxPerIp} simultaneous event streams per IP`);
    void reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    raw.write(":ok\n\n");
    let lastWrite = Date.now();
    // At most two writes a turn of the event loop (a storm of device events would otherwise make a syscall,
    // a TCP segment and a wake-up of the reader for each): the first task of a turn that has events writes
    // them at its end, so that an event of a quiet stream does not wait for the rest of the turn (in a
    // storm, other devices' messages: bench/README.md, claim); the events of the turn's later tasks go out
    // together at its end.
    let pending = "";
    let scheduled = false;
    let wroteThisTurn = false;
    const flush = () => {
      scheduled = false;
      const text = pending;
      pending = "";
      if (text.length > 0 && !raw.destroyed) raw.write(text);
    };
    const schedule = () => {
      scheduled = true;
      if (wroteThisTurn) {
        setImmediate(flush);
        return;
      }
      wroteThisTurn = true;
      setImmediate(() => (wroteThisTurn = false));
      process.nextTick(flush);
    };
    const write = (text: string) => {
      if (raw.writableLength + pending.length > MAX_BUFFERED_SSE_BYTES) {
        request.log.warn({ ip }, "event stream client too slow; closing");
        pending = "";
        raw.destroy();
        return;
      }
      pending += text;
      if (!scheduled) schedule();
      lastWrite = Date.now();
    };
    const sink: EventStreamSink = { write };
    streams.add(sink, prefix, filter);
    // spark-server writes a bare newline after 9 s of silence; api-js gives up after 15 s. @see spec/cloud-api.md §5.2
    const keepAlive = setInterval(
      () => {
        if (Date.now() - lastWrite >= config.sseKeepAliveMs - 50) write("\n");
      },
      Math.max(50, Math.floor(config.sseKeepAliveMs / 3)),
    );
    let closed = false;
    const cleanup = () => {
      if (closed) return;
      closed = true;
      clearInterval(keepAlive);
      streams.remove(sink);
      void slots.release(ip);
    };
    openStreams.add(raw);
    raw.on("close", () => {
      openStreams.delete(raw);
      cleanup();
    });
    raw.on("error", cleanup);
  }

  app.get("/v1/events", () => {
    throw new AppError("BAD_REQUEST", "event prefix filter is required");
  });

  app.get("/v1/events/*", async (request, reply) => {
    const principal = await authenticate(services, request);
    const prefix = prefixOf(request);
    if (prefix.length === 0) throw new AppError("BAD_REQUEST", "event prefix filter is required");
    await stream(request, reply, { prefix, ...streamFilters.public(principal) });
  });

  const mine = async (request: FastifyRequest, reply: FastifyReply) => {
    const principal = await authenticate(services, request);
    requirePerson(principal);
    await stream(request, reply, { prefix: prefixOf(request), ...streamFilters.mine(principal) });
  };
  app.get("/v1/devices/events", mine);
  app.get("/v1/devices/events/*", mine);

  const oneDevice = async (request: FastifyRequest, reply: FastifyReply) => {
    const principal = await authenticate(services, request);
    const device = await devices.findAccessible(principal, param(request, "deviceIdOrName"));
    await stream(request, reply, {
      prefix: prefixOf(request),
      ...streamFilters.device(principal, device.id),
    });
  };
  app.get("/v1/devices/:deviceIdOrName/events", oneDevice);
  app.get("/v1/devices/:deviceIdOrName/events/*", oneDevice);

  const product = async (request: FastifyRequest, reply: FastifyReply) => {
    const principal = await authenticate(services, request);
    const found = await administeredProduct(services, request, principal);
    await stream(request, reply, { prefix: prefixOf(request), ...streamFilters.product(found.id) });
  };
  app.get("/v1/products/:productIdOrSlug/events", product);
  app.get("/v1/products/:productIdOrSlug/events/*", product);

  const productDevice = async (request: FastifyRequest, reply: FastifyReply) => {
    const principal = await authenticate(services, request);
    const found = await administeredProduct(services, request, principal);
    const device = await devices.findInProduct(found.id, param(request, "deviceId"));
    await stream(request, reply, {
      prefix: prefixOf(request),
      ...streamFilters.productDevice(found.id, device.id),
    });
  };
  app.get("/v1/products/:productIdOrSlug/devices/:deviceId/events", productDevice);
  app.get("/v1/products/:productIdOrSlug/devices/:deviceId/events/*", productDevice);

  /** Validates a publish body into an event of the API's own `coreid`. @see spec/cloud-api.md §5.3 */
  function eventFrom(
    fields: Record<string, unknown>,
    scope: { ownerUserId: string | null; ownerCustomerId: string | null; productId: number | null },
  ): CloudEvent {
    const name = requiredString(fields, "name");
    if (name.length > MAX_EVENT_NAME_LENGTH || /[\r\n]/.test(name))
      throw new BadRequestError(`name must be 1-${MAX_EVENT_NAME_LENGTH} characters on one line`);
    const data = optionalString(fields, "data") ?? null;
    if (data !== null && Buffer.byteLength(data) > MAX_EVENT_DATA_BYTES)
      throw new BadRequestError(`data must be at most ${MAX_EVENT_DATA_BYTES} bytes`);
    const ttl = optionalInteger(fields, "ttl") ?? DEFAULT_EVENT_TTL;
    // `private` missing, empty or "false" means public, as in spark-server. @see spec/cloud-api.md §5.3
    const isPrivate = optionalBoolean(fields, "private") === true;
    return {
      name,
      data,
      ttl,
      publishedAt: new Date(config.clock()).toISOString(),
      coreid: API_COREID,
      isPublic: !isPrivate,
      ...scope,
    };
  }

  app.post("/v1/devices/events", async (request) => {
    const principal = await authenticate(services, request);
    requirePerson(principal);
    const event = eventFrom(bodyOf(request), {
      ownerUserId: principal.kind === "user" ? principal.userId : null,
      ownerCustomerId: principal.kind === "customer" ? principal.customerId : null,
      productId: principal.kind === "customer" ? principal.productId : null,
    });
    await bus.publish(event);
    return { ok: true };
  });

  app.post("/v1/products/:productIdOrSlug/events", async (request) => {
    const principal = await authenticate(services, request);
    if (principal.kind === "customer")
      throw new ForbiddenError("Customer tokens cannot call product endpoints");
    const found = await administeredProduct(services, request, principal);
    await bus.publish(
      eventFrom(bodyOf(request), { ownerUserId: null, ownerCustomerId: null, productId: found.id }),
    );
    return { ok: true };
  });
}
