import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import type { DestinationStream, Logger } from "pino";

import type { CloudConfig, CloudOptions } from "./config.js";
import { createCloudConfig } from "./config.js";
import type { EventBus } from "./events/bus.js";
import { connectNatsBus } from "./events/nats-bus.js";
import type { ConnectionLimits } from "./gateway/connection.js";
import type { Gateway } from "./gateway/gateway.js";
import { startGateway } from "./gateway/gateway.js";
import type { ServerKey } from "./gateway/server-key.js";
import { loadServerKey } from "./gateway/server-key.js";
import { createHttpApp } from "./http/app.js";
import type { Services } from "./services/index.js";
import { createServices } from "./services/index.js";
import type { Storage } from "./storage/database.js";
import { openStorage } from "./storage/database.js";

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
  /** How often the gateway beats (and sweeps dead nodes' devices offline), in ms. @default 10000 */
  gatewayHeartbeatMs?: number;
  /** NATS URL: the event bus between nodes (scale-out). Without it events stay inside this process. */
  natsUrl?: string | undefined;
  /** Device connection timeouts and limits. */
  deviceLimits?: Partial<Omit<ConnectionLimits, "autoRegister">>;
}

/** A running cloud node. Dispose it (or call `close`) to stop it. */
export interface RunningCloud extends AsyncDisposable {
  /** Base URL of the HTTP API, e.g. `http://127.0.0.1:8080`. */
  readonly url: string;
  readonly port: number;
  readonly config: CloudConfig;
  readonly services: Services;
  readonly app: FastifyInstance;
  readonly logger: Logger;
  /** The device gateway, unless started with `devicePort: false`. */
  readonly gateway: Gateway | undefined;
  /** The device-protocol server key (its public half goes on devices). */
  readonly serverKey: ServerKey;
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
    gatewayHeartbeatMs,
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
  let bus: EventBus | undefined;
  try {
    bus = natsUrl
      ? await connectNatsBus({
          url: natsUrl,
          onError: (error) => logger.warn({ err: error }, "event bus message dropped"),
        })
      : undefined;
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
    await storage.db.updateTable("devices").set({ online: 0 }).where("online", "=", 1).execute();
  }
  const gatewayAddress = {
    host: deviceHost ?? host,
    port: undefined as number | undefined,
    udpPort: undefined as number | undefined,
  };
  const app = await createHttpApp({ services, logger, serverKey, gateway: gatewayAddress });
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
        heartbeatMs: gatewayHeartbeatMs,
      });
      gatewayAddress.port = gateway.port;
      gatewayAddress.udpPort = gateway.udpPort;
    }
  } catch (error) {
    await app.close();
    await storage.close();
    throw error;
  }
  const address = app.server.address();
  const boundPort = typeof address === "object" && address ? address.port : port;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${boundPort}`;
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      await gateway?.close();
      await app.close();
      await services.bus.close();
      await storage.close();
    })());
  return {
    url,
    port: boundPort,
    config,
    services,
    app,
    logger,
    gateway,
    serverKey,
    close,
    [Symbol.asyncDispose]: close,
  };
}
