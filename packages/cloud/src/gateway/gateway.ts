import { createServer } from "node:net";
import type { Server, Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";

import type { Membership } from "../cluster/membership.js";
import { API_COREID } from "../events/model.js";
import type { Services } from "../services/index.js";
import type { CloseReason, ConnectionContext, ConnectionLimits, DeviceSession } from "./connection.js";
import { handleDeviceConnection } from "./connection.js";
import { inThreadCrypto, startCryptoPool } from "./crypto-pool.js";
import { GatewayDevices } from "./device-reads.js";
import { SubscriptionIndex } from "./event-routing.js";
import { HandshakeAdmission } from "./handshake-admission.js";
import { HandshakeQueue } from "./handshake-queue.js";
import type { ServerKey } from "./server-key.js";
import { SessionRegistry } from "./session-registry.js";
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
  /** This node's cluster membership: its id is written on the devices it holds; each beat reconciles them. */
  readonly membership: Membership;
  /**
   * Worker threads for the handshakes' asymmetric crypto; 0 runs it on the event loop, one job per turn.
   * @default the machine's cores (`os.availableParallelism()`)
   */
  readonly cryptoWorkers?: number | undefined;
  /** Nice value of the crypto worker threads (Linux). @default DEFAULT_CRYPTO_NICENESS (10) */
  readonly cryptoNiceness?: number | undefined;
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
  /** Gen 3 sessions continued from the database without a handshake (restored at start, or another node's). */
  dtlsRestored: number;
  /** Held devices' pings answered by their transport without waking the session (Gen 2; see `PingGate`). */
  pingsAnsweredAlone: number;
  /** Gen 3: lookups of a stored session, for a Connection ID or device this node does not hold, that found none. */
  dtlsLookupMisses: number;
  /** Gen 3: such lookups refused to a source past its limits (see `HandshakeAdmission`). */
  dtlsLookupsRefused: number;
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
  maxHandshakes: 10_000,
  maxHandshakesPerAddress: 128,
  maxHandshakeFailuresPerAddress: 100,
  handshakeFailureWindowMs: 60_000,
};

/** Listens for devices, runs each connection, routes bus events and commands to the sessions. */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const { services, logger, membership } = options;
  const limits: ConnectionLimits = Object.freeze({ ...DEFAULT_CONNECTION_LIMITS, ...options.limits });
  const nodeId = membership.nodeId;
  const registry = new SessionRegistry<DeviceSession>({ services, nodeId, logger });
  const sockets = new Set<Socket>();
  const stats: GatewayStats = {
    connected: 0,
    accepted: 0,
    closed: {},
    dtlsHandshakes: 0,
    dtlsRestored: 0,
    pingsAnsweredAlone: 0,
    dtlsLookupMisses: 0,
    dtlsLookupsRefused: 0,
  };
  registry.onSizeChange = (size) => (stats.connected = size);
  const routes = new SubscriptionIndex<DeviceSession>();
  const unsubscribe = services.bus.subscribe((event) => {
    // Devices' system events (`spark/status`, `particle/device/updates/…`) are for people's streams, not
    // for the owner's other devices: forwarding them would send each of N devices N messages whenever N
    // devices of one owner connect.
    if (SYSTEM_EVENT_PREFIXES.some((prefix) => event.name.startsWith(prefix)) && event.coreid !== API_COREID)
      return;
    for (const session of routes.match(event)) {
      if (session.deviceId !== event.coreid)
        session.sendEvent({
          name: event.name,
          data: event.data ?? "",
          isPublic: event.isPublic,
          ttl: event.ttl,
        });
    }
  });
  // Each beat: this node's sessions checked against the database (re-asserted after a pause, closed when
  // replaced while the bus was away).
  const stopReconciling = membership.onBeat((beat) => registry.reconcile(beat));

  const crypto =
    options.cryptoWorkers === 0
      ? inThreadCrypto(options.serverKey.privateKey)
      : startCryptoPool({
          serverPrivateKey: options.serverKey.privateKey,
          size: options.cryptoWorkers,
          niceness: options.cryptoNiceness,
        });
  const context: ConnectionContext = {
    nodeId,
    services,
    devices: new GatewayDevices(services.db),
    serverKey: options.serverKey,
    logger,
    limits,
    crypto,
    handshakeSteps: new HandshakeQueue(),
    admission: new HandshakeAdmission(limits, services.config.clock),
    registry,
    routes,
    onSocketError(this: Duplex, error: Error) {
      logger.debug({ err: error, ip: (this as Partial<Socket>).remoteAddress }, "device socket error");
    },
    closed(reason: CloseReason) {
      stats.closed[reason] = (stats.closed[reason] ?? 0) + 1;
    },
    pingAnswered() {
      stats.pingsAnsweredAlone += 1;
    },
  };

  function forget(this: Socket): void {
    sockets.delete(this);
  }
  const server: Server = createServer({ noDelay: true }, (socket) => {
    stats.accepted += 1;
    sockets.add(socket);
    socket.setKeepAlive(true, 15_000);
    // One listener for every socket (`this` is the socket): a closure per connection costs each held device.
    socket.on("close", forget);
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
        onRestore: () => (stats.dtlsRestored += 1),
        onLookupMissed: () => (stats.dtlsLookupMisses += 1),
        onLookupRefused: () => (stats.dtlsLookupsRefused += 1),
      });
    } catch (error) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      stopReconciling();
      registry.close();
      unsubscribe();
      throw error;
    }
  }

  return {
    port,
    udpPort: udp?.port,
    stats,
    session: (deviceId) => registry.get(deviceId),
    async close() {
      stopReconciling();
      registry.close();
      unsubscribe();
      await udp?.close();
      const closing = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closing;
      // Sessions mark their devices offline as their sockets close; give those writes a moment.
      const deadline = Date.now() + 2000;
      while (registry.size > 0 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 10));
      await crypto.close();
    },
  };
}
