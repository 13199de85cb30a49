import { randomUUID } from "node:crypto";
import { createServer } from "node:net";
import type { Server, Socket } from "node:net";
import type { Logger } from "pino";

import { API_COREID } from "../events/model.js";
import type { Services } from "../services/index.js";
import type { CloseReason, ConnectionLimits, DeviceSession } from "./connection.js";
import { handleDeviceConnection } from "./connection.js";
import { HandshakeQueue } from "./handshake-queue.js";
import type { ServerKey } from "./server-key.js";
import type { UdpGateway } from "./udp-gateway.js";
import { startUdpGateway } from "./udp-gateway.js";

/** Options of {@link startGateway}. */
export interface GatewayOptions {
  readonly services: Services;
  readonly serverKey: ServerKey;
  readonly logger: Logger;
  /** TCP port for devices; 0 picks a free one. @default 5683 */
  readonly port?: number;
  /** @default "127.0.0.1" */
  readonly host?: string;
  readonly limits?: Partial<ConnectionLimits>;
  /** UDP port for Gen 3 devices (DTLS); 0 picks a free one; `false` runs none. @default false */
  readonly udpPort?: number | false;
  /** First CoAP retransmission timeout over UDP, in ms. @default 4000 */
  readonly udpAckTimeoutMs?: number;
  /** Restore the stored DTLS sessions at start (a single node continuing its devices' sessions). @default false */
  readonly restoreUdpSessions?: boolean;
  /**
   * How often this node writes its heartbeat and looks for dead nodes, in ms. A node silent for three beats
   * is taken for dead and its devices for offline. @default 10000
   */
  readonly heartbeatMs?: number;
}

/** Counters of a running gateway, for logs, tests and benchmarks. */
export interface GatewayStats {
  /** Devices connected now. */
  connected: number;
  /** Connections accepted since start. */
  accepted: number;
  /** Connections ended since start, by reason. */
  closed: Partial<Record<CloseReason, number>>;
  /** Full DTLS handshakes completed (Gen 3); a resumed or restored session adds none. */
  dtlsHandshakes: number;
}

/**
 * The device gateway: Gen 2 devices connect here over TCP, Gen 3 devices over UDP (DTLS).
 * @see spec/device-protocols.md Part B, docs/gen3-wire-format.md
 */
export interface Gateway {
  readonly port: number;
  /** The UDP port of Gen 3 devices, when they are served. */
  readonly udpPort: number | undefined;
  readonly stats: GatewayStats;
  /** The live session of a device on this node, if it is connected here. */
  session(deviceId: string): DeviceSession | undefined;
  close(): Promise<void>;
}

/** Event name prefixes reserved for system events. @see spec/cloud-api.md §5.4 */
const SYSTEM_EVENT_PREFIXES = ["spark", "particle"];

/** Default limits. @see ConnectionLimits */
export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  handshakeTimeoutMs: 15_000,
  helloTimeoutMs: 10_000,
  idleTimeoutMs: 31_000,
  maxFrameLength: 2048,
  autoRegister: false,
};

/** Listens for devices, runs each connection, routes bus events and commands to the sessions. */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const { services, logger } = options;
  const limits: ConnectionLimits = Object.freeze({ ...DEFAULT_CONNECTION_LIMITS, ...options.limits });
  const sessions = new Map<string, DeviceSession>();
  const sockets = new Set<Socket>();
  const stats: GatewayStats = { connected: 0, accepted: 0, closed: {}, dtlsHandshakes: 0 };
  const unsubscribe = services.bus.subscribe((event) => {
    // Devices' system events (`spark/status`, `particle/device/updates/…`) are for people's streams, not
    // for the owner's other devices: forwarding them would send each of N devices N messages whenever N
    // devices of one owner connect.
    if (SYSTEM_EVENT_PREFIXES.some((prefix) => event.name.startsWith(prefix)) && event.coreid !== API_COREID)
      return;
    for (const session of sessions.values()) {
      if (session.deviceId !== event.coreid) session.deliver(event);
    }
  });

  const nodeId = randomUUID();
  const heartbeatMs = options.heartbeatMs ?? 10_000;
  const { db, config } = services;
  await db.insertInto("gateway_nodes").values({ id: nodeId, last_seen: config.clock() }).execute();

  /**
   * Beats, then takes the devices of nodes that stopped beating (crashed, killed) for offline, telling their
   * owners: with several nodes on one database nobody else would. One node's sweep wins per device.
   */
  async function heartbeat(): Promise<void> {
    const now = config.clock();
    await db.updateTable("gateway_nodes").set({ last_seen: now }).where("id", "=", nodeId).execute();
    const dead = (
      await db
        .selectFrom("gateway_nodes")
        .select("id")
        .where("last_seen", "<", now - 3 * heartbeatMs)
        .where("id", "!=", nodeId)
        .execute()
    ).map((row) => row.id);
    if (dead.length === 0) return;
    const stranded = await services.devices
      .query()
      .where("devices.online", "=", 1)
      .where("devices.gateway_node", "in", dead)
      .execute();
    for (const device of stranded) {
      const result = await db
        .updateTable("devices")
        .set({ online: 0, gateway_node: null, updated_at: now })
        .where("id", "=", device.id)
        .where("online", "=", 1)
        .where("gateway_node", "=", device.gateway_node)
        .executeTakeFirst();
      if (result.numUpdatedRows === 0n) continue;
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
    await db.deleteFrom("gateway_nodes").where("id", "in", dead).execute();
    logger.warn(
      { nodes: dead, devices: stranded.length },
      "gateway nodes stopped beating; their devices are offline",
    );
  }
  const beating = setInterval(() => {
    heartbeat().catch((error: unknown) => logger.error({ err: error }, "gateway heartbeat failed"));
  }, heartbeatMs);
  beating.unref();

  const context = {
    nodeId,
    services,
    serverKey: options.serverKey,
    logger,
    limits,
    handshakeQueue: new HandshakeQueue(),
    register(session: DeviceSession): () => boolean {
      const previous = sessions.get(session.deviceId);
      if (previous) {
        // A device that reconnects replaces its old connection (which may be half-open).
        sessions.delete(session.deviceId);
        previous.close();
      }
      sessions.set(session.deviceId, session);
      stats.connected = sessions.size;
      const stopServing = services.bus.serveDevice(session.deviceId, (command) => session.command(command));
      return () => {
        stopServing();
        if (sessions.get(session.deviceId) !== session) return false;
        sessions.delete(session.deviceId);
        stats.connected = sessions.size;
        return true;
      };
    },
    closed(reason: CloseReason) {
      stats.closed[reason] = (stats.closed[reason] ?? 0) + 1;
    },
  };

  const server: Server = createServer({ noDelay: true }, (socket) => {
    stats.accepted += 1;
    sockets.add(socket);
    socket.setKeepAlive(true, 15_000);
    socket.on("close", () => sockets.delete(socket));
    void handleDeviceConnection(socket, context, socket.remoteAddress ?? "unknown");
  });
  server.on("error", (error) => logger.error({ err: error }, "device gateway error"));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 5683, options.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  let udp: UdpGateway | undefined;
  if (options.udpPort !== undefined && options.udpPort !== false) {
    try {
      udp = await startUdpGateway({
        context,
        serverKey: options.serverKey.ec,
        port: options.udpPort,
        host: options.host ?? "127.0.0.1",
        ackTimeoutMs: options.udpAckTimeoutMs,
        restoreSessions: options.restoreUdpSessions,
        onHandshake: () => (stats.dtlsHandshakes += 1),
      });
    } catch (error) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      clearInterval(beating);
      unsubscribe();
      throw error;
    }
  }

  return {
    port,
    udpPort: udp?.port,
    stats,
    session: (deviceId) => sessions.get(deviceId),
    async close() {
      clearInterval(beating);
      unsubscribe();
      await udp?.close();
      const closing = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closing;
      // Sessions mark their devices offline as their sockets close; give those writes a moment.
      const deadline = Date.now() + 2000;
      while (sessions.size > 0 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 10));
      await db.deleteFrom("gateway_nodes").where("id", "=", nodeId).execute();
    },
  };
}
