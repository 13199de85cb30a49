import { randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import type { DestinationStream, Logger } from "pino";

import { loadDeploymentId } from "./cluster/deployment.js";
import { createSharedRateLimitStore, pruneRateCounters, StreamSlots } from "./cluster/limits.js";
import type { Membership } from "./cluster/membership.js";
import { startMembership } from "./cluster/membership.js";
import type { CloudConfig, CloudOptions } from "./config.js";
import { createCloudConfig } from "./config.js";
import type { EventBus } from "./events/bus.js";
import { connectNatsBus } from "./events/nats-bus.js";
import type { ConnectionLimits } from "./gateway/connection.js";
import type { Gateway } from "./gateway/gateway.js";
import { startGateway } from "./gateway/gateway.js";
import { sweepOrphans } from "./gateway/presence.js";
import type { ServerKey } from "./gateway/server-key.js";
import { loadServerKey } from "./gateway/server-key.js";
import { createHttpApp } from "./http/app.js";
import { CONSOLE_PATH } from "./http/console.js";
import type { Services } from "./services/index.js";
import { createServices } from "./services/index.js";
import type { Storage } from "./storage/database.js";
import { openStorage } from "./storage/database.js";
import { WebhookDispatcher } from "./webhooks/dispatcher.js";

/** How to start a cloud node. */
export interface StartCloudOptions extends CloudOptions {
  /** HTTP port; 0 picks a free one. @default 8080 */
  port?: number;
  /** Address to listen on. @default "127.0.0.1" */
  host?: string;
  /** Data folder for the SQLite file (and, later, server keys); created if missing. Ignored with `databaseUrl`. */
  dataDir?: string;
  /** Where logs go. @default standard output */
  logDestination?: DestinationStream;
  /** TCP port of the device gateway; 0 picks a free one; `false` runs no gateway. @default 5683 */
  devicePort?: number | false;
  /** UDP port of the Gen 3 (DTLS) gateway; 0 picks a free one; `false` runs none. `roost serve` uses 5684. @default false */
  deviceUdpPort?: number | false;
  /** Address the device gateway listens on. @default the HTTP host */
  deviceHost?: string;
  /** Register unknown devices' offered keys instead of refusing them (development only). @default false */
  autoRegisterDevices?: boolean;
  /** How often the node beats (and sweeps dead nodes' devices offline), in ms. @default 10000 */
  gatewayHeartbeatMs?: number;
  /** Silence after which a node is declared dead and its devices offline, in ms (database clock). @default 3 × gatewayHeartbeatMs */
  deadAfterMs?: number;
  /** NATS URL: the event bus between nodes (scale-out). Without it events stay inside this process. */
  natsUrl?: string | undefined;
  /** NATS subject prefix. @default "roost." + the deployment id kept in the database (one per database) */
  natsPrefix?: string | undefined;
  /** Device connection timeouts and limits. */
  deviceLimits?: Partial<Omit<ConnectionLimits, "autoRegister">>;
  /** Worker threads for handshake crypto; 0 keeps it on the event loop. @default the machine's cores */
  cryptoWorkers?: number | undefined;
  /** Nice value of the crypto worker threads, 0–19 (Linux): connected devices' traffic first. @default 10 */
  cryptoNiceness?: number | undefined;
  /** Folder of the built web console (`@roost/console`'s `dist`), served at `/console/`. @default none */
  consoleDir?: string | undefined;
  /** Run this node's webhook dispatcher (every node of a cluster may; each delivery goes out once). @default true */
  deliverWebhooks?: boolean;
}

/** A running cloud node. Dispose it (or call `close`) to stop it. */
export interface RunningCloud extends AsyncDisposable {
  /** Base URL of the HTTP API, e.g. `http://127.0.0.1:8080`. */
  readonly url: string;
  /** URL of the web console, when it is served. */
  readonly consoleUrl: string | undefined;
  readonly port: number;
  readonly config: CloudConfig;
  readonly services: Services;
  readonly app: FastifyInstance;
  readonly logger: Logger;
  /** The device gateway, unless started with `devicePort: false`. */
  readonly gateway: Gateway | undefined;
  /** The device-protocol server key (its public half goes on devices). */
  readonly serverKey: ServerKey;
  /** This node's cluster membership (its id is on the devices it holds). */
  readonly membership: Membership;
  /** The NATS subject prefix in use, if the bus is NATS. */
  readonly natsPrefix: string | undefined;
  /** This node's webhook dispatcher, unless started with `deliverWebhooks: false`. */
  readonly webhooks: WebhookDispatcher | undefined;
  /**
   * Pushes this node's API rate-limit counts to the shared database and reads back the cluster's (they
   * are otherwise synced every 100 ms); resolves at once when the limits are this node's own (SQLite).
   */
  syncRateLimits(): Promise<void>;
  close(): Promise<void>;
}

/** Opens storage (running migrations), builds the HTTP API and listens. */
export async function startCloud(options: StartCloudOptions = {}): Promise<RunningCloud> {
  const {
    port = 8080,
    host = "127.0.0.1",
    dataDir,
    logDestination,
    devicePort = 5683,
    deviceUdpPort = false,
    deviceHost,
    autoRegisterDevices = false,
    deviceLimits,
    natsUrl,
    natsPrefix: natsPrefixOption,
    gatewayHeartbeatMs,
    deadAfterMs,
    cryptoWorkers,
    cryptoNiceness,
    consoleDir,
    deliverWebhooks = true,
    ...cloudOptions
  } = options;
  let sqliteFile = cloudOptions.sqliteFile;
  if (!cloudOptions.databaseUrl && dataDir) {
    mkdirSync(dataDir, { recursive: true });
    sqliteFile ??= join(dataDir, "roost.sqlite");
  }
  const config = createCloudConfig({ ...cloudOptions, sqliteFile });
  const logger = pino({ level: config.logLevel }, logDestination ?? pino.destination(1));
  const storage: Storage = await openStorage({
    databaseUrl: config.databaseUrl,
    sqliteFile: config.sqliteFile,
  });
  const nodeId = randomUUID();
  let bus: EventBus | undefined;
  let natsPrefix: string | undefined;
  try {
    if (natsUrl) {
      natsPrefix =
        natsPrefixOption ?? `roost.${await loadDeploymentId({ db: storage.db, clock: config.clock })}`;
      bus = await connectNatsBus({
        url: natsUrl,
        prefix: natsPrefix,
        nodeId,
        onError: (error) => logger.warn({ err: error }, "event bus message dropped"),
        onStatus: (connected) =>
          connected
            ? logger.info("event bus reconnected")
            : logger.error("event bus unreachable; reconnecting (local devices and streams still work)"),
      });
    }
  } catch (error) {
    await storage.close();
    throw error;
  }
  const services = createServices({ db: storage.db, config, bus });
  const serverKey = await loadServerKey({
    db: storage.db,
    clock: config.clock,
    dataDir: config.databaseUrl ? undefined : dataDir,
  });
  if (storage.dialect === "sqlite") {
    // One SQLite file is one node: nothing can still be connected from before this start.
    await storage.db
      .updateTable("devices")
      .set({ online: 0, gateway_node: null })
      .where("online", "=", 1)
      .execute();
    // Nor can an earlier run's membership or open streams still count.
    await storage.db.deleteFrom("gateway_nodes").execute();
    await storage.db.deleteFrom("stream_slots").execute();
  }
  let membership: Membership;
  try {
    membership = await startMembership({
      db: storage.db,
      nodeId,
      logger,
      heartbeatMs: gatewayHeartbeatMs,
      deadAfterMs,
    });
  } catch (error) {
    await services.bus.close();
    await storage.close();
    throw error;
  }
  // Every node sweeps: the devices of nodes declared dead go offline, and their owners hear it.
  membership.onBeat(async () => {
    const now = config.clock();
    for (const device of await sweepOrphans(storage.db, now)) {
      await services.bus.publish({
        name: "spark/status",
        data: "offline",
        ttl: 60,
        publishedAt: new Date(now).toISOString(),
        coreid: device.id,
        isPublic: false,
        ownerUserId: device.owner_user_id,
        ownerCustomerId: device.owner_customer_id,
        productId: device.product_id,
      });
    }
  });
  // Back from a bus outage: reconcile presence at once rather than at the next beat.
  services.bus.onConnectionChange((connected) => {
    if (connected) void membership.beat();
  });
  const gatewayAddress = {
    host: deviceHost ?? host,
    port: undefined as number | undefined,
    udpPort: undefined as number | undefined,
  };
  storage.checkpointer?.on("failure", (error) =>
    logger.warn(
      { err: error },
      "SQLite checkpoint off the event loop failed; the serving connection will checkpoint",
    ),
  );
  const streamSlots = new StreamSlots({ db: storage.db, nodeId, logger, maxPerIp: config.sseMaxPerIp });
  membership.onBeat((beat) => streamSlots.sweep(beat.rejoined));
  if (storage.dialect === "postgres")
    membership.onBeat(() => pruneRateCounters(storage.db, config.rateLimits.windowMs));
  // PostgreSQL means several nodes may share the database: their rate limits count together. One
  // SQLite file is one node, whose memory is enough (and spares a write per request).
  const rateLimitStore =
    storage.dialect === "postgres" ? createSharedRateLimitStore({ db: storage.db, logger }) : undefined;
  const app = await createHttpApp({
    services,
    logger,
    serverKey,
    gateway: gatewayAddress,
    limits: {
      streamSlots,
      rateLimitStore,
    },
    consoleDir,
  });
  let gateway: Gateway | undefined;
  try {
    await app.listen({ port, host });
    if (devicePort !== false) {
      gateway = await startGateway({
        services,
        serverKey,
        logger,
        port: devicePort,
        udpPort: deviceUdpPort,
        // One SQLite file is one node: it holds every stored session (a cluster does not restore them yet).
        restoreUdpSessions: storage.dialect === "sqlite",
        host: gatewayAddress.host,
        limits: { ...deviceLimits, autoRegister: autoRegisterDevices },
        membership,
        cryptoWorkers,
        cryptoNiceness,
      });
      gatewayAddress.port = gateway.port;
      gatewayAddress.udpPort = gateway.udpPort;
    }
  } catch (error) {
    await app.close();
    await membership.stop();
    await services.bus.close();
    await storage.close();
    throw error;
  }
  // Every node sweeps the attempt logs; the deletes are idempotent, so nodes need not agree on who does.
  const sweep = setInterval(() => {
    services.retention
      .sweep()
      .catch((error: unknown) => logger.warn({ err: error }, "attempt-log sweep failed"));
  }, config.retention.sweepIntervalMs);
  sweep.unref();
  const webhooks = deliverWebhooks
    ? new WebhookDispatcher({
        db: storage.db,
        config,
        dialect: storage.dialect,
        bus: services.bus,
        webhooks: services.webhooks,
        logger,
      })
    : undefined;
  webhooks?.start();
  const address = app.server.address();
  const boundPort = typeof address === "object" && address ? address.port : port;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${boundPort}`;
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      clearInterval(sweep);
      await webhooks?.stop();
      await gateway?.close();
      await membership.stop();
      await app.close();
      // The counts of the last sync interval go to the database before it closes.
      await rateLimitStore?.sync();
      await services.bus.close();
      await storage.close();
    })());
  return {
    url,
    consoleUrl: consoleDir === undefined ? undefined : `${url}${CONSOLE_PATH}`,
    port: boundPort,
    config,
    services,
    app,
    logger,
    gateway,
    serverKey,
    membership,
    natsPrefix,
    webhooks,
    syncRateLimits: () => rateLimitStore?.sync() ?? Promise.resolve(),
    close,
    [Symbol.asyncDispose]: close,
  };
}
