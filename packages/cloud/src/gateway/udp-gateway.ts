import { createPublicKey, randomInt } from "node:crypto";
import { createSocket } from "node:dgram";
import type { Socket } from "node:dgram";

import type { DeviceMessage, HelloPayload } from "@roost/protocol";
import { decodeMessage } from "@roost/protocol";

import type { DeviceRow } from "../services/devices.js";
import type { CloseReason, ConnectionContext, DeviceTransport, MessageChannel } from "./connection.js";
import { recordAttempt, runDeviceSession, SessionEnd } from "./connection.js";
import type { DtlsCloseReason, PeerAddress } from "./dtls-server.js";
import { DtlsServer, DtlsSession } from "./dtls-server.js";
import { deleteDtlsSession, loadDtlsSessions, saveDtlsSession } from "./dtls-store.js";
import type { EcServerKey } from "./server-key.js";

/**
 * CoAP over an unreliable channel: a CON is retransmitted from ACK_TIMEOUT, doubling, MAX_RETRANSMIT times.
 * Device OS uses 4 s and 3. @see RFC 7252 §4.8, Device OS coap_channel.h
 */
export const COAP_RELIABILITY = { ackTimeoutMs: 4000, maxRetransmit: 3 } as const;

/** How many recent device CON message IDs are remembered to answer duplicates without handling them twice. */
const DEDUP_WINDOW = 64;

const COAP_TYPE = { CON: 0, NON: 1, ACK: 2, RST: 3 } as const;

function coapHeader(message: Uint8Array): { type: number; id: number; empty: boolean } | undefined {
  if (message.length < 4) return undefined;
  const first = message[0] ?? 0;
  return {
    type: (first >> 4) & 0b11,
    id: ((message[2] ?? 0) << 8) | (message[3] ?? 0),
    empty: (message[1] ?? 0) === 0 && message.length === 4,
  };
}

/**
 * The Gen 3 transport of one device: CoAP messages in DTLS application-data records, with CoAP's reliability
 * done here (our CONs retransmitted until acknowledged; the device's repeated CONs answered from the cache of
 * our replies, never handled twice), so that the session above is the same as over TCP.
 */
class UdpTransport implements DeviceTransport {
  readonly channel: MessageChannel;
  readonly #session: DtlsSession;
  readonly #queue: DeviceMessage[] = [];
  #wake: (() => void) | undefined;
  #ended: SessionEnd | undefined;
  /** Our CONs awaiting their ACK, by message ID. */
  readonly #unacked = new Map<number, { timer: NodeJS.Timeout; acked: (ok: boolean) => void }>();
  /** The device's recent CON IDs and our reply to each (once sent). */
  readonly #seen = new Map<number, Uint8Array | undefined>();

  constructor(
    session: DtlsSession,
    private readonly ackTimeoutMs: number,
  ) {
    this.#session = session;
    session.onData = (content) => this.#receive(content);
    const reasons: Record<DtlsCloseReason, CloseReason> = {
      closed_by_peer: "device_closed",
      alert: "bad_frame",
      replaced: "replaced",
      closed: "server_shutdown",
    };
    session.onClose = (reason) => this.#end(new SessionEnd(reasons[reason], `DTLS ${reason}`));
    this.channel = {
      unreliable: true,
      send: (message) => this.#send(message),
      // Quietly: no close_notify, so that the device keeps its session to resume with this or another node.
      close: () => {
        this.#stopAll();
        session.close("closed", { quiet: true });
      },
    };
  }

  #stopAll(): void {
    for (const pending of this.#unacked.values()) {
      clearTimeout(pending.timer);
      pending.acked(false);
    }
    this.#unacked.clear();
  }

  #end(end: SessionEnd): void {
    this.#ended ??= end;
    this.#stopAll();
    this.#wake?.();
  }

  #send(message: Uint8Array, acked?: (ok: boolean) => void): void {
    const header = coapHeader(message);
    this.#session.send(message);
    if (!header) return;
    if ((header.type === COAP_TYPE.ACK || header.type === COAP_TYPE.RST) && this.#seen.has(header.id))
      this.#seen.set(header.id, message);
    if (header.type !== COAP_TYPE.CON) return;
    let attempt = 0;
    // RFC 7252 §4.8: the first timeout is random in [ACK_TIMEOUT, 1.5 × ACK_TIMEOUT].
    let delay = this.ackTimeoutMs * (1 + Math.random() / 2);
    const retry = () => {
      if (attempt >= COAP_RELIABILITY.maxRetransmit) {
        this.#unacked.delete(header.id);
        acked?.(false);
        return;
      }
      attempt++;
      this.#session.send(message);
      delay *= 2;
      const pending = this.#unacked.get(header.id);
      if (pending) pending.timer = setTimeout(retry, delay).unref();
    };
    this.#unacked.set(header.id, {
      timer: setTimeout(retry, delay).unref(),
      acked: acked ?? (() => undefined),
    });
  }

  #receive(content: Uint8Array): void {
    const header = coapHeader(content);
    if (header && (header.type === COAP_TYPE.ACK || header.type === COAP_TYPE.RST)) {
      const pending = this.#unacked.get(header.id);
      if (pending) {
        clearTimeout(pending.timer);
        this.#unacked.delete(header.id);
        pending.acked(true);
      }
      // An RST or an empty ACK only ends our retransmission; the session has nothing to do with it.
      if (header.type === COAP_TYPE.RST || header.empty) return;
    }
    if (header?.type === COAP_TYPE.CON) {
      if (this.#seen.has(header.id)) {
        // A repeat: our ACK was lost. Answer it again; never handle it twice. @see RFC 7252 §4.5
        const reply = this.#seen.get(header.id);
        if (reply) this.#session.send(reply);
        return;
      }
      this.#seen.set(header.id, undefined);
      if (this.#seen.size > DEDUP_WINDOW) {
        const oldest = this.#seen.keys().next().value;
        if (oldest !== undefined) this.#seen.delete(oldest);
      }
    }
    let message: DeviceMessage;
    try {
      message = decodeMessage(content, "device");
    } catch (error) {
      this.#end(new SessionEnd("bad_frame", error instanceof Error ? error.message : String(error)));
      return;
    }
    this.#queue.push(message);
    this.#wake?.();
  }

  async next(timeoutMs: number, timeoutReason: CloseReason): Promise<DeviceMessage> {
    for (;;) {
      const message = this.#queue.shift();
      if (message) return message;
      if (this.#ended) throw this.#ended;
      const timedOut = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(true), timeoutMs);
        this.#wake = () => {
          clearTimeout(timer);
          resolve(false);
        };
      });
      this.#wake = undefined;
      if (timedOut) throw new SessionEnd(timeoutReason);
    }
  }

  /** Sends a CoAP ping (empty CON) and resolves whether the device acknowledged it. @see RFC 7252 §4.3 */
  stillThere(): Promise<boolean> {
    if (this.#ended) return Promise.resolve(false);
    const id = randomInt(0x10000);
    return new Promise((resolve) => this.#send(Uint8Array.of(0x40, 0x00, id >> 8, id & 0xff), resolve));
  }
}

/** Options of {@link startUdpGateway}. */
export interface UdpGatewayOptions {
  readonly context: ConnectionContext;
  readonly serverKey: EcServerKey;
  /** UDP port; 0 picks a free one. @default 5684 */
  readonly port?: number;
  /** @default "127.0.0.1" */
  readonly host?: string;
  /** First CoAP retransmission timeout, in ms. @default 4000 */
  readonly ackTimeoutMs?: number;
  /**
   * Restore every stored DTLS session at start and hold it as connected (one node: a restart continues
   * every device's session without a handshake). @default false
   */
  readonly restoreSessions?: boolean;
  /** Called once per completed full handshake (for the gateway's counters). */
  readonly onHandshake?: () => void;
}

/** The Gen 3 side of the gateway: a UDP socket and the DTLS server on it. */
export interface UdpGateway {
  readonly port: number;
  readonly dtls: DtlsServer;
  close(): Promise<void>;
}

/**
 * Listens for Gen 3 devices on UDP: DTLS sessions from {@link DtlsServer}, each running the same device
 * session as TCP over a {@link UdpTransport}. The device is named by its Hello and must present the key
 * registered for it. @see docs/gen3-wire-format.md
 */
export async function startUdpGateway(options: UdpGatewayOptions): Promise<UdpGateway> {
  const { context } = options;
  const { services, logger: log } = context;
  const socket: Socket = createSocket({ type: "udp4" });
  const byDevice = new Map<string, DtlsSession>();
  const running = new Set<Promise<void>>();
  const dtls = new DtlsServer({
    serverKey: { privateKey: options.serverKey.privateKey },
    send: (datagram, to) => socket.send(datagram, to.port, to.address),
    onDrop: (reason, from) =>
      log.debug({ ip: from.address, port: from.port, reason }, "DTLS datagram dropped"),
    onSession: (session) => {
      options.onHandshake?.();
      log.info({ ip: session.address.address, port: session.address.port }, "DTLS handshake completed");
      const run = serve(session).finally(() => running.delete(run));
      running.add(run);
    },
  });

  /** Keeps the stored copy of a device's session current: its address and its sequence reservation. */
  function persist(session: DtlsSession, deviceId: string): Promise<void> {
    const save = () =>
      saveDtlsSession(services.db, { deviceId, session, now: services.config.clock() }).catch(
        (error: unknown) => log.error({ err: error, deviceId }, "could not store the DTLS session"),
      );
    const previous = session.onAddressChange;
    session.onAddressChange = (address) => {
      previous(address);
      void save();
    };
    session.onReserve = () => void save();
    return save();
  }

  /** Reasons after which the device's stored session is of no more use (it ended it, or it is not the device's). */
  const FINAL: ReadonlySet<CloseReason> = new Set([
    "device_closed",
    "goodbye",
    "key_mismatch",
    "unknown_device",
    "bad_frame",
  ]);

  async function serve(session: DtlsSession, resumed?: DeviceRow): Promise<void> {
    const transport = new UdpTransport(session, options.ackTimeoutMs ?? COAP_RELIABILITY.ackTimeoutMs);
    let deviceId: string | undefined = resumed?.id;
    if (resumed) {
      byDevice.set(resumed.id, session);
      void persist(session, resumed.id);
    }
    const ip = session.address.address;
    const device = async (hello: HelloPayload): Promise<DeviceRow> => {
      const id = hello.deviceId;
      if (!id) throw new SessionEnd("bad_frame", "a Hello over UDP without the device ID");
      deviceId = id;
      const row = await services.devices.get(id);
      if (!row) {
        await recordAttempt(services, { deviceId: id, ip, reason: "unknown_device" });
        throw new SessionEnd("unknown_device");
      }
      let same = false;
      try {
        const presented = createPublicKey({
          key: Buffer.from(session.peerPublicKeyDer),
          format: "der",
          type: "spki",
        });
        same = createPublicKey(row.public_key).equals(presented);
      } catch {
        same = false;
      }
      if (!same) {
        await recordAttempt(services, { deviceId: id, ip, reason: "key_mismatch" });
        throw new SessionEnd("key_mismatch");
      }
      const previous = byDevice.get(id);
      if (previous && previous !== session) previous.close("replaced", { quiet: true });
      byDevice.set(id, session);
      await persist(session, id);
      return row;
    };
    const reason = await runDeviceSession({
      transport,
      context,
      remoteAddress: ip,
      device,
      ...(resumed ? { resumed } : {}),
    });
    if (deviceId && byDevice.get(deviceId) === session) {
      byDevice.delete(deviceId);
      if (FINAL.has(reason))
        await deleteDtlsSession(services.db, deviceId).catch((error: unknown) =>
          log.error({ err: error, deviceId }, "could not delete the DTLS session"),
        );
    }
    dtls.detach(session);
    context.closed(reason);
  }

  socket.on("message", (datagram, from) => {
    dtls.receive(new Uint8Array(datagram), { address: from.address, port: from.port }, (id) =>
      byDevice.get(Buffer.from(id).toString("hex")),
    );
  });
  socket.on("error", (error) => log.error({ err: error }, "device UDP socket error"));
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(options.port ?? 5684, options.host ?? "127.0.0.1", () => {
      socket.off("error", reject);
      resolve();
    });
  });
  if (options.restoreSessions) {
    for (const stored of await loadDtlsSessions(services.db)) {
      const row = await services.devices.get(stored.deviceId);
      if (!row) continue;
      const session = new DtlsSession({
        state: stored.state,
        address: stored.address,
        send: (datagram, to) => socket.send(datagram, to.port, to.address),
      });
      dtls.attach(session);
      const run = serve(session, row).finally(() => running.delete(run));
      running.add(run);
    }
  }
  return {
    port: socket.address().port,
    dtls,
    async close() {
      dtls.close();
      // Quietly: devices keep their sessions and resume them with the next node (no new handshake).
      for (const session of byDevice.values()) session.close("closed", { quiet: true });
      await Promise.allSettled([...running]);
      await new Promise<void>((resolve) => socket.close(() => resolve()));
    },
  };
}

export type { PeerAddress };
