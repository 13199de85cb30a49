import { createPublicKey, randomInt } from "node:crypto";
import { createSocket } from "node:dgram";
import type { Socket } from "node:dgram";

import type { DeviceMessage, HelloPayload } from "@roost/protocol";
import { COAP_RELIABILITY, COAP_TYPES, coapHeader, CoapReliability, decodeMessage } from "@roost/protocol";

import type { DeviceRow } from "../services/devices.js";
import type { CloseReason, ConnectionContext, DeviceTransport, MessageChannel } from "./connection.js";
import { recordAttempt, runDeviceSession, SessionEnd } from "./connection.js";
import type { DtlsCloseReason, PeerAddress } from "./dtls-server.js";
import { DtlsServer, DtlsSession } from "./dtls-server.js";
import type { StoredDtlsSession } from "./dtls-store.js";
import {
  deleteDtlsSession,
  findDtlsSessionByCid,
  findDtlsSessionByDevice,
  loadDtlsSessions,
  saveDtlsSession,
} from "./dtls-store.js";
import { HandshakeAdmission } from "./handshake-admission.js";
import type { EcServerKey } from "./server-key.js";

/**
 * Continuing sessions stored by other nodes: lookups in flight at once, datagrams held per lookup, and how long
 * a key that is not stored is not looked up again (records with made-up CIDs must not become database load).
 */
const RESTORE_LIMITS = { inFlight: 256, heldDatagrams: 8, missMs: 10_000, misses: 10_000 } as const;

/**
 * The Gen 3 transport of one device: CoAP messages in DTLS application-data records, with CoAP's reliability
 * ({@link CoapReliability}, shared with the virtual device) done here, so that the session above is the same
 * as over TCP.
 */
class UdpTransport implements DeviceTransport {
  readonly channel: MessageChannel;
  readonly #queue: DeviceMessage[] = [];
  #wake: (() => void) | undefined;
  #ended: SessionEnd | undefined;
  readonly #coap: CoapReliability;

  constructor(session: DtlsSession, ackTimeoutMs: number) {
    this.#coap = new CoapReliability({ send: (message) => session.send(message), ackTimeoutMs });
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
        this.#coap.stop(false);
        session.close("closed", { quiet: true });
      },
    };
  }

  #end(end: SessionEnd): void {
    this.#ended ??= end;
    this.#coap.stop(false);
    this.#wake?.();
  }

  #send(message: Uint8Array, acked?: (ok: boolean) => void): void {
    this.#coap.send(message, acked);
  }

  #receive(content: Uint8Array): void {
    // An RST, or a CON seen before (answered again from our reply), is not the session's business.
    if (!this.#coap.receive(content)) return;
    const header = coapHeader(content);
    // An empty ACK only ended our retransmission.
    if (header?.type === COAP_TYPES.ACK && header.empty) return;
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
  /** Called once per session continued from the database (restored at start or taken over from another node). */
  readonly onRestore?: () => void;
  /** Called when a stored session looked up for an unknown Connection ID or device was not found. */
  readonly onLookupMissed?: () => void;
  /** Called when a source was refused a lookup by its limits. */
  readonly onLookupRefused?: () => void;
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
    onUnknownSession: (key, datagram, from) => takeOver(key, datagram, from),
    onSession: (session) => {
      options.onHandshake?.();
      log.info({ ip: session.address.address, port: session.address.port }, "DTLS handshake completed");
      const run = serve(session).finally(() => running.delete(run));
      running.add(run);
    },
  });

  /**
   * Keeps the stored copy of a device's session current: its address and its sequence reservation. Writes are
   * in order, each a compare-and-set on the text this node last wrote (or `written`, the text it restored): when
   * another node has continued the session meanwhile, this node closes its copy quietly. A new block is
   * reserved while half of the previous one is left, so the write lands before its numbers are used.
   */
  function persist(session: DtlsSession, deviceId: string, written?: string): Promise<void> {
    let last = written;
    let chain = Promise.resolve();
    const save = () => {
      chain = chain.then(async () => {
        if (session.closed) return;
        try {
          const result = await saveDtlsSession(services.db, {
            deviceId,
            session,
            now: services.config.clock(),
            expected: last,
          });
          if (!result.saved) {
            log.info({ deviceId }, "DTLS session continued by another node; this copy stops");
            session.close("replaced", { quiet: true });
            return;
          }
          last = result.text;
        } catch (error) {
          log.error({ err: error, deviceId }, "could not store the DTLS session");
        }
      });
      return chain;
    };
    const previous = session.onAddressChange;
    session.onAddressChange = (address) => {
      previous(address);
      void save();
    };
    session.onReserve = () => void save();
    return save();
  }

  /** Lookups of stored sessions in flight, by key, with the datagrams that wait for them. */
  const restoring = new Map<string, { datagram: Uint8Array; from: PeerAddress }[]>();
  /**
   * Lookups per source address, by the Gen 2 port's rule ({@link HandshakeAdmission}): a lookup is an
   * unauthenticated source's claim to a stored session, as a handshake is. Lookups in flight from one address
   * are capped, and an address whose made-up Connection IDs missed too often is not looked up for again until
   * its window ends: one host cannot fill the lookups every source shares, nor keep the database busy.
   */
  const lookups = new HandshakeAdmission(
    // The lookups of all sources together are bounded by `restoring` (RESTORE_LIMITS.inFlight).
    { ...context.limits, maxHandshakes: Infinity },
    services.config.clock,
  );
  /** Keys recently looked up and not stored, with when. */
  const misses = new Map<string, number>();

  /**
   * A record names a session this node does not hold (a CID, or a move-session device ID): another node (or
   * this one before a restart) may have stored it. Looks it up, takes it over with a compare-and-set of a new
   * sequence reservation, and feeds the datagrams again: the device goes on without a handshake.
   */
  function takeOver(
    key: { readonly cid?: Uint8Array; readonly deviceId?: Uint8Array },
    datagram: Uint8Array,
    from: PeerAddress,
  ): boolean {
    const name = key.cid
      ? `cid:${Buffer.from(key.cid).toString("hex")}`
      : `id:${Buffer.from(key.deviceId ?? []).toString("hex")}`;
    const held = restoring.get(name);
    if (held) {
      if (held.length < RESTORE_LIMITS.heldDatagrams) held.push({ datagram, from });
      return true;
    }
    const now = Date.now();
    const missedAt = misses.get(name);
    if (missedAt !== undefined && now - missedAt < RESTORE_LIMITS.missMs) return false;
    if (restoring.size >= RESTORE_LIMITS.inFlight || closing) return false;
    const admitted = lookups.admit(from.address);
    if (admitted !== "admitted") {
      options.onLookupRefused?.();
      log.debug({ ip: from.address, reason: admitted }, "stored DTLS session not looked up");
      return false;
    }
    restoring.set(name, [{ datagram, from }]);
    let missed = false;
    const miss = () => {
      missed = true;
      options.onLookupMissed?.();
      misses.delete(name);
      misses.set(name, now);
      if (misses.size > RESTORE_LIMITS.misses) {
        const oldest = misses.keys().next().value;
        if (oldest !== undefined) misses.delete(oldest);
      }
    };
    void (async () => {
      let taken = false;
      try {
        const stored = key.cid
          ? await findDtlsSessionByCid(services.db, key.cid)
          : await findDtlsSessionByDevice(services.db, Buffer.from(key.deviceId ?? []).toString("hex"));
        const row = stored && (await services.devices.get(stored.deviceId));
        if (!stored || !row) return miss();
        if (byDevice.has(row.id) || closing) return;
        taken = await continueStored(stored, row);
        if (taken)
          log.info({ deviceId: row.id, ip: from.address }, "DTLS session continued from the database");
      } catch (error) {
        log.error({ err: error }, "could not look up a stored DTLS session");
      } finally {
        if (lookups.finished(from.address, missed))
          log.warn(
            { ip: from.address, misses: context.limits.maxHandshakeFailuresPerAddress },
            "too many unknown DTLS sessions named from this address: not looked up for the rest of the window",
          );
        const waiting = restoring.get(name) ?? [];
        restoring.delete(name);
        if (taken) for (const held of waiting) receive(held.datagram, held.from);
      }
    })();
    return true;
  }

  /** Takes a stored session: writes our own reservation first (compare-and-set), then serves it. */
  async function continueStored(stored: StoredDtlsSession, row: DeviceRow): Promise<boolean> {
    const session = new DtlsSession({
      state: stored.state,
      address: stored.address,
      send: (datagram, to) => socket.send(datagram, to.port, to.address),
    });
    const claimed = await saveDtlsSession(services.db, {
      deviceId: row.id,
      session,
      now: services.config.clock(),
      expected: stored.text,
    });
    // Another node took it first: it serves the device.
    if (!claimed.saved || byDevice.has(row.id) || closing) return false;
    options.onRestore?.();
    dtls.attach(session);
    const run = serve(session, row, claimed.text).finally(() => running.delete(run));
    running.add(run);
    return true;
  }

  let closing = false;

  /** Reasons after which the device's stored session is of no more use (it ended it, or it is not the device's). */
  const FINAL: ReadonlySet<CloseReason> = new Set([
    "device_closed",
    "goodbye",
    "key_mismatch",
    "unknown_device",
    "bad_frame",
  ]);

  async function serve(session: DtlsSession, resumed?: DeviceRow, written?: string): Promise<void> {
    const transport = new UdpTransport(session, options.ackTimeoutMs ?? COAP_RELIABILITY.ackTimeoutMs);
    let deviceId: string | undefined = resumed?.id;
    if (resumed) {
      byDevice.set(resumed.id, session);
      // Its reservation is already written (`written`): later writes compare against it.
      void persist(session, resumed.id, written);
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

  function receive(datagram: Uint8Array, from: PeerAddress): void {
    dtls.receive(datagram, from, (id) => byDevice.get(Buffer.from(id).toString("hex")));
  }
  socket.on("message", (datagram, from) =>
    receive(new Uint8Array(datagram), { address: from.address, port: from.port }),
  );
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
      if (row) await continueStored(stored, row);
    }
  }
  return {
    port: socket.address().port,
    dtls,
    async close() {
      closing = true;
      dtls.close();
      // Quietly: devices keep their sessions and resume them with the next node (no new handshake).
      for (const session of byDevice.values()) session.close("closed", { quiet: true });
      await Promise.allSettled([...running]);
      await new Promise<void>((resolve) => socket.close(() => resolve()));
    },
  };
}

export type { PeerAddress };
