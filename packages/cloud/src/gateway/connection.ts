import { createPublicKey, randomBytes, randomInt } from "node:crypto";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";

import type { DeviceMessage, HelloPayload, ServerMessage, VariableType } from "@roost/protocol";
import {
  COAP_CODES,
  coapCodeClass,
  decodeFunctionResult,
  decodeVariableValue,
  encodeMessage,
  HANDSHAKE_CIPHERTEXT_LENGTH,
  HANDSHAKE_NONCE_LENGTH,
  HELLO_FLAGS,
  SESSION_IV_LENGTH,
  SESSION_KEY_LENGTH,
  SESSION_SALT_LENGTH,
  VARIABLE_TYPES,
} from "@roost/protocol";

import type { DeviceCommand, DeviceCommandResult } from "../events/bus.js";
import type { CloudEvent } from "../events/model.js";
import { randomBytesPooled } from "../security.js";
import type { ClaimResult } from "../services/claims.js";
import type { Services } from "../services/index.js";
import { ByteReader, DeviceTimeoutError } from "./byte-reader.js";
import type { HandshakeCrypto } from "./crypto-pool.js";
import { DeviceKeyRefused } from "./crypto-pool.js";
import { importDevicePublicKey } from "./device-key.js";
import type { GatewayDevices, SessionDevice } from "./device-reads.js";
import type { SubscriptionIndex } from "./event-routing.js";
import { ownerKeyOf } from "./event-routing.js";
import type { Admission, HandshakeAdmission } from "./handshake-admission.js";
import type { HandshakeQueue } from "./handshake-queue.js";
import type { ClaimedDevice, SessionLease } from "./presence.js";
import type { ServerKey } from "./server-key.js";
import type { SessionRegistry } from "./session-registry.js";
import { SessionCipherPair, TcpTransport } from "./tcp-transport.js";

/** Timeouts and limits of one device connection. */
export interface ConnectionLimits {
  /** Time for the device to send its 256-byte handshake ciphertext, in ms. @default 15000 */
  readonly handshakeTimeoutMs: number;
  /** Time for the device's Hello after the handshake, in ms. @default 10000 */
  readonly helloTimeoutMs: number;
  /** Silence after which the device is taken for gone, in ms (devices ping after 15 s). @default 31000 @see spec/device-protocols.md B.6 */
  readonly idleTimeoutMs: number;
  /** Largest accepted frame body in bytes (Photon buffers are 800). @default 2048 @see spec/device-protocols.md B.3 */
  readonly maxFrameLength: number;
  /** Register an unknown device's offered key instead of refusing it (development only). @default false */
  readonly autoRegister: boolean;
  /** Gen 2 handshakes in progress at once, over all sources ({@link HandshakeAdmission}). @default 10000 */
  readonly maxHandshakes: number;
  /** Gen 2 handshakes in progress at once from one IP address. @default 128 */
  readonly maxHandshakesPerAddress: number;
  /** Failed Gen 2 handshakes from one IP address per window, past which its connections are refused. @default 100 */
  readonly maxHandshakeFailuresPerAddress: number;
  /** That window, in ms, from the address's first failure in it. @default 60000 */
  readonly handshakeFailureWindowMs: number;
}

/** Why a connection ended, counted by the gateway. */
export type CloseReason =
  | "handshake_timeout"
  | "hello_timeout"
  | "idle_timeout"
  | "bad_handshake"
  | "bad_frame"
  | "unknown_device"
  | "key_mismatch"
  | "replaced"
  | "device_closed"
  | "goodbye"
  | "server_shutdown"
  | Exclude<Admission, "admitted">;

/** What a connection needs from the gateway that runs it. */
export interface ConnectionContext {
  readonly services: Services;
  /** The gateway's own reads and writes of device rows (statements written once). */
  readonly devices: GatewayDevices;
  readonly serverKey: ServerKey;
  readonly logger: Logger;
  readonly limits: ConnectionLimits;
  /** This gateway node's id, written on the devices it holds. */
  readonly nodeId: string;
  /** Which new Gen 2 connections are taken on (none: all of them). */
  readonly admission?: HandshakeAdmission | undefined;
  /** Where the asymmetric work of handshakes runs: worker threads, or the event loop after devices' traffic. */
  readonly crypto: HandshakeCrypto;
  /**
   * The main-thread steps of handshakes (the device read and key check once the RSA is done, the reply and
   * the session's cipher), one per turn of the event loop: what devices already in session sent is read
   * and handled first, so that a storm of connecting devices does not delay their claims, events and pings.
   * Each handshake still takes its turn in order, so none starves. @default every step at once
   */
  readonly handshakeSteps?: HandshakeQueue | undefined;
  /** The sessions of this node, fenced by the device's session epoch across the cluster. */
  readonly registry: SessionRegistry<DeviceSession>;
  /** The subscriptions of this node's sessions, which route bus events to devices. */
  readonly routes: SubscriptionIndex<DeviceSession>;
  /** Called once per connection with why it ended. */
  closed(reason: CloseReason): void;
  /** Called when a transport answered a ping without the session (see {@link PingGate}). */
  pingAnswered?(): void;
  /** The `error` listener of every device socket (`this` is the socket): one function, not one per connection. */
  readonly onSocketError: (this: Duplex, error: Error) => void;
}

/** Events the cloud keeps to itself: the claim code is a secret, the hardware facts are for the gateway. */
const HIDDEN_DEVICE_EVENTS = ["spark/device/claim/", "spark/hardware/", "spark/device/ident/"];

/** The event that tells a device its claim code was used: it then clears it and sets claimed. @see spec/device-protocols.md B.5 */
const CLAIM_CONFIRM_EVENT = "spark/device/claim/confirm";

const CLAIM_CODE_EVENT = "spark/device/claim/code";

export { CLAIM_ATTEMPT_EVENT } from "../events/model.js";

/** Throttle for `last_heard` writes: at most one per device per this many ms. */
const LAST_HEARD_WRITE_INTERVAL_MS = 60_000;

const TYPE_BY_CODE = new Map<number, VariableType>(
  Object.entries(VARIABLE_TYPES).map(([name, code]) => [code, name as VariableType]),
);

interface Pending {
  resolve(message: Extract<DeviceMessage, { kind: "response" }>): void;
}

/**
 * How one device's CoAP messages travel, one encoded message per call: Gen 2 frames and encrypts them on a TCP
 * stream (spec B.3), Gen 3 puts each in a DTLS record over UDP with CoAP's own retransmission. The session
 * logic above it is the same for both.
 */
export interface MessageChannel {
  /** Sends one encoded CoAP message. */
  send(message: Uint8Array): void;
  /** Ends the transport (idempotent). */
  close(): void;
  /** True over UDP: CoAP's reliability (CON, ACK, retransmission, dedup) is the channel's job. */
  readonly unreliable: boolean;
}

/** What the message loop reads from: the next device message, or a {@link SessionEnd}. */
export interface DeviceTransport {
  readonly channel: MessageChannel;
  /**
   * The next message; throws SessionEnd with `timeoutReason` after `timeoutMs` of silence. A transport may
   * answer pings itself while it waits, when `pings` allows.
   */
  next(timeoutMs: number, timeoutReason: CloseReason, pings?: PingGate): Promise<DeviceMessage>;
  /** Called on `timeoutReason` "idle_timeout" instead of ending, where the transport can ask (UDP ping). */
  stillThere?(): Promise<boolean>;
}

/**
 * Whether a ping now needs nothing of the session but its ACK, so that the transport may answer it without
 * waking the session: a held fleet's pings then allocate almost nothing on the server (bench/README.md,
 * connections). Asked at each ping.
 */
export interface PingGate {
  answersPingAlone(): boolean;
  /** The transport answered one. */
  answeredPing(): void;
}

/**
 * One authenticated device connection: the encrypted CoAP session after the handshake. Owns the send
 * chain, the pending requests (by 1-byte token) and the device's subscriptions.
 */
export class DeviceSession implements PingGate {
  readonly deviceId: string;
  readonly #channel: MessageChannel;
  readonly #context: ConnectionContext;
  readonly #log: Logger;
  /** Requests waiting for the device's response, by token; made on the first request (most sessions make none). */
  #pending: Map<number, Pending> | undefined;
  #messageId = randomInt(0x10000);
  #device: SessionDevice;
  #lastHeardWritten = 0;
  #closed = false;
  #closeReason: CloseReason | undefined;

  constructor(options: {
    channel: MessageChannel;
    context: ConnectionContext;
    device: SessionDevice;
    log: Logger;
    /** When `last_heard` was last written for this device (the Hello writes it). @default never */
    heardAt?: number;
  }) {
    this.#channel = options.channel;
    this.#context = options.context;
    this.#device = options.device;
    this.deviceId = options.device.id;
    this.#log = options.log;
    this.#lastHeardWritten = options.heardAt ?? 0;
  }

  /** The device as last read (owner and product for event routing). */
  get device(): SessionDevice {
    return this.#device;
  }

  /** Takes the owner the session's registration found (the row may have changed since the handshake read it). */
  registered(claimed: Pick<ClaimedDevice, "owner_user_id" | "owner_customer_id" | "product_id">): void {
    const device = this.#device;
    if (
      device.owner_user_id !== claimed.owner_user_id ||
      device.owner_customer_id !== claimed.owner_customer_id ||
      device.product_id !== claimed.product_id
    )
      this.#setDevice({
        ...device,
        owner_user_id: claimed.owner_user_id,
        owner_customer_id: claimed.owner_customer_id,
        product_id: claimed.product_id,
      });
  }

  /** Sends one message over the session's channel. */
  send(message: ServerMessage): void {
    if (this.#closed) return;
    this.#channel.send(encodeMessage(message));
  }

  #nextId(): number {
    this.#messageId = (this.#messageId + 1) & 0xffff;
    return this.#messageId;
  }

  /** Why the gateway closed the connection, if it did. */
  get closeReason(): CloseReason | undefined {
    return this.#closeReason;
  }

  /** Closes the connection (idempotent). */
  close(reason?: CloseReason): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeReason = reason;
    // Its subscriptions stop routing events here (a replaced session, a connection that ended).
    this.#context.routes.remove(this);
    for (const pending of this.#pending?.values() ?? [])
      pending.resolve({
        kind: "response",
        type: "ACK",
        code: COAP_CODES.SERVICE_UNAVAILABLE,
        messageId: 0,
        token: undefined,
        payload: new Uint8Array(0),
      });
    this.#pending?.clear();
    this.#channel.close();
  }

  /** Re-reads the device row, after a claim or an ownership change made elsewhere. */
  async refresh(): Promise<void> {
    const row = await this.#context.devices.forSession(this.deviceId);
    if (row) this.#setDevice(row);
  }

  /** An event for this device, if one of its subscriptions wants it. @see spec/device-protocols.md B.4 (Event S→D) */
  deliver(event: CloudEvent, options: { direct?: boolean } = {}): void {
    // `direct`: a webhook's answer to the device that triggered it, which asked for it by prefix alone.
    const wanted = options.direct
      ? this.#context.routes.subscribedTo(this, event.name)
      : this.#context.routes.wantedBy(this, event);
    if (wanted)
      this.sendEvent({ name: event.name, data: event.data ?? "", isPublic: event.isPublic, ttl: event.ttl });
  }

  /** Keeps the device row and the routes of its subscriptions (which follow its owner) up to date. */
  #setDevice(row: SessionDevice): void {
    this.#device = row;
    this.#context.routes.setOwner(this, ownerKeyOf(row));
  }

  /** Sends an event to the device (NON POST). */
  sendEvent(event: { name: string; data: string; isPublic: boolean; ttl?: number }): void {
    this.send({
      kind: "event",
      messageId: this.#nextId(),
      confirmable: false,
      visibility: event.isPublic ? "public" : "private",
      name: event.name,
      ttl: event.ttl ?? 60,
      data: event.data,
    });
  }

  /** Runs a command from the API (function, variable, signal, ping). */
  async command(command: DeviceCommand): Promise<DeviceCommandResult> {
    switch (command.kind) {
      case "function": {
        const response = await this.#request((token) => ({
          kind: "function-call",
          messageId: this.#nextId(),
          token,
          name: command.name,
          argument: command.argument,
        }));
        if (!response) return { ok: false, error: "timeout" };
        if (coapCodeClass(response.code) !== 2)
          return { ok: false, error: response.code === COAP_CODES.NOT_FOUND ? "not_found" : "bad_request" };
        return { ok: true, value: decodeFunctionResult(response.payload) };
      }
      case "variable": {
        const response = await this.#request((token) => ({
          kind: "variable-request",
          messageId: this.#nextId(),
          token,
          name: command.name,
        }));
        if (!response) return { ok: false, error: "timeout" };
        if (coapCodeClass(response.code) !== 2)
          return { ok: false, error: response.code === COAP_CODES.NOT_FOUND ? "not_found" : "device_error" };
        const types = parseVariables(this.#device.variables);
        const type = TYPE_BY_CODE.get(types[command.name] ?? VARIABLE_TYPES.STRING) ?? "STRING";
        return { ok: true, value: decodeVariableValue(response.payload, type).value };
      }
      case "signal": {
        const response = await this.#request((token) => ({
          kind: "signal",
          messageId: this.#nextId(),
          token,
          start: command.on,
        }));
        return response && coapCodeClass(response.code) === 2
          ? { ok: true, value: command.on }
          : { ok: false, error: "timeout" };
      }
      case "ping":
        return { ok: true, value: true };
      case "event":
        this.deliver(command.event, { direct: command.direct });
        return { ok: true };
      case "refresh":
        await this.refresh();
        return { ok: true };
    }
  }

  /** Sends a request with a fresh 1-byte token and waits for the response carrying it. */
  #request(
    build: (token: number) => ServerMessage,
  ): Promise<Extract<DeviceMessage, { kind: "response" }> | undefined> {
    const pending = (this.#pending ??= new Map<number, Pending>());
    let token = randomInt(256);
    for (let tries = 0; pending.has(token) && tries < 256; tries++) token = (token + 1) & 0xff;
    if (pending.has(token)) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        pending.delete(token);
        resolve(undefined);
      }, this.#context.services.config.deviceRequestTimeoutMs);
      pending.set(token, {
        resolve: (message) => {
          clearTimeout(timer);
          pending.delete(token);
          resolve(message);
        },
      });
      this.send(build(token));
    });
  }

  /** A ping needs only its ACK unless `last_heard` is due (see {@link DeviceSession.handle}). */
  answersPingAlone(): boolean {
    return (
      !this.#closed &&
      this.#context.services.config.clock() - this.#lastHeardWritten < LAST_HEARD_WRITE_INTERVAL_MS
    );
  }

  answeredPing(): void {
    this.#context.pingAnswered?.();
  }

  /** Handles one message from the device. Dispatch table of spec B.4; anything unexpected closes the session. */
  async handle(message: DeviceMessage): Promise<void> {
    // At most one `last_heard` write a minute: most messages need no wait (nor a promise) for it.
    const now = this.#context.services.config.clock();
    if (now - this.#lastHeardWritten >= LAST_HEARD_WRITE_INTERVAL_MS) await this.#heard(now);
    switch (message.kind) {
      case "ping":
        this.send({ kind: "ack", messageId: message.messageId });
        return;
      case "ack":
        return;
      case "response":
        if (message.token !== undefined) this.#pending?.get(message.token)?.resolve(message);
        // A describe response comes CON and wants an ACK. @see spec B.4 (Describe request)
        if (message.type === "CON") this.send({ kind: "ack", messageId: message.messageId });
        return;
      case "event":
        if (message.confirmable) this.send({ kind: "ack", messageId: message.messageId });
        await this.#event(message);
        return;
      case "subscribe":
        this.#context.routes.add(
          this,
          {
            prefix: message.filter,
            scope:
              message.scope.kind === "device" ? { deviceId: message.scope.deviceId } : message.scope.kind,
          },
          ownerKeyOf(this.#device),
        );
        this.send({ kind: "ack", messageId: message.messageId });
        return;
      case "time-request":
        this.send({
          kind: "time-response",
          messageId: message.messageId,
          token: message.token,
          unixSeconds: Math.floor(this.#context.services.config.clock() / 1000),
        });
        return;
      case "describe-post":
        this.send({ kind: "ack", messageId: message.messageId });
        await this.#describe(message.description);
        return;
      case "goodbye":
        if (message.confirmable) this.send({ kind: "ack", messageId: message.messageId });
        throw new SessionEnd("goodbye");
      case "hello":
        // Over UDP a device that resumed its saved session says Hello again when its state changed; it
        // waits for the ACK. Over TCP every session has exactly one Hello.
        if (this.#channel.unreliable) {
          if (message.confirmable) this.send({ kind: "ack", messageId: message.messageId });
          return;
        }
        throw new SessionEnd("bad_frame", "second Hello in one session");
    }
  }

  /** Stores the function and variable names of a describe JSON. @see spec/device-protocols.md B.4 (Describe JSON) */
  async #describe(text: string): Promise<void> {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      this.#log.warn({ deviceId: this.deviceId }, "describe payload is not JSON; ignored");
      return;
    }
    if (typeof parsed !== "object" || parsed === null) return;
    const { f, v } = parsed as { f?: unknown; v?: unknown };
    const changes: { functions?: string; variables?: string } = {};
    if (Array.isArray(f))
      changes.functions = JSON.stringify(f.filter((name): name is string => typeof name === "string"));
    if (typeof v === "object" && v !== null && !Array.isArray(v)) {
      const variables = Object.fromEntries(Object.entries(v).filter(([, type]) => typeof type === "number"));
      changes.variables = JSON.stringify(variables);
    }
    if (Object.keys(changes).length === 0) return;
    await this.#context.devices.setDescribe(this.deviceId, changes);
    // What was just written is all that changed: no need to read the row back.
    if (changes.variables !== undefined) this.#device = { ...this.#device, variables: changes.variables };
  }

  /** A device event: the claim code goes to the claim service; others are published to the streams. */
  async #event(message: Extract<DeviceMessage, { kind: "event" }>): Promise<void> {
    if (message.name === CLAIM_CODE_EVENT) {
      await this.#claim(message.data);
      return;
    }
    if (HIDDEN_DEVICE_EVENTS.some((prefix) => message.name.startsWith(prefix))) return;
    await this.publish({
      name: message.name,
      data: message.data,
      ttl: message.ttl,
      isPublic: message.visibility === "public",
    });
  }

  /**
   * The device presents its stored claim code. The claim service decides in one transaction; on success the
   * device gets `spark/device/claim/confirm` and the new owner's stream gets `spark/status online`, both
   * after the commit. @see spec/cloud-api.md §3.3, spec/device-protocols.md B.5
   */
  async #claim(code: string): Promise<ClaimResult> {
    const result = await this.#context.services.claims.claimByCode({
      deviceId: this.deviceId,
      code: code.trim(),
      source: "gateway",
      online: true,
    });
    this.#log.info(
      { deviceId: this.deviceId, ok: result.ok, reason: result.reason, claimId: result.claimId },
      "claim code presented",
    );
    const { bus } = this.#context.services;
    if (result.ok) {
      // The ownership the claim committed: no re-read (on PostgreSQL a round trip behind every other
      // device's statements in the pool). The row's other columns are not changed by a claim.
      if (result.device) this.registered(result.device);
      else await this.refresh();
      this.sendEvent({ name: CLAIM_CONFIRM_EVENT, data: "", isPublic: false });
      // Its webhook deliveries were queued in the claim's transaction: straight to the streams.
      if (result.online) await bus.publish(result.online);
      else await this.publish({ name: "spark/status", data: "online", ttl: 60, isPublic: false });
    }
    // The code's owner hears of every attempt (Roost's claim timeline), and of the claim itself; their
    // webhook deliveries were queued in the claim's transaction.
    for (const event of result.events) await bus.publish(event);
    return result;
  }

  /** Publishes an event of this device to the bus, with its current owner and product. */
  async publish(event: { name: string; data: string; ttl: number; isPublic: boolean }): Promise<void> {
    const device = this.#device;
    await this.#context.services.bus.publish({
      name: event.name,
      data: event.data.length > 0 ? event.data : null,
      ttl: event.ttl,
      publishedAt: new Date(this.#context.services.config.clock()).toISOString(),
      coreid: this.deviceId,
      isPublic: event.isPublic,
      ownerUserId: device.owner_user_id,
      ownerCustomerId: device.owner_customer_id,
      productId: device.product_id,
    });
  }

  /** Asks for the describe of devices that do not post their own (before 2.2.0). */
  requestDescribe(): void {
    void this.#request((token) => ({
      kind: "describe-request",
      messageId: this.#nextId(),
      token,
      flags: 3,
    })).then(async (response) => {
      if (response && response.code === COAP_CODES.CONTENT)
        await this.#describe(Buffer.from(response.payload).toString("utf8"));
    });
  }

  async #heard(now: number): Promise<void> {
    this.#lastHeardWritten = now;
    // Only the current session writes presence; a replaced one finds out and closes.
    const lease = this.#context.registry.lease(this);
    if (!lease) return;
    try {
      if (!(await this.#context.registry.presence.touch(lease, now))) this.close("replaced");
    } catch (error) {
      // The database is away: the device stays connected; `last_heard` is written at the next interval.
      this.#log.warn({ err: error, deviceId: this.deviceId }, "could not write last_heard");
    }
  }
}

/** Ends the message loop with a reason (not an error of ours). */
export class SessionEnd extends Error {
  constructor(
    readonly reason: CloseReason,
    message?: string,
  ) {
    super(message ?? reason);
  }
}

function parseVariables(text: string): Record<string, number> {
  try {
    const parsed = JSON.parse(text) as unknown;
    return typeof parsed === "object" && parsed !== null ? (parsed as Record<string, number>) : {};
  } catch {
    return {};
  }
}

/** The DER bytes inside a PEM block (no parsing of the key itself). */
function pemBody(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----(BEGIN|END) [^-]+-----|\s/g, ""), "base64");
}

/**
 * The key to encrypt the session credentials to, as SPKI DER, if the device offered its registered key; else
 * undefined. Keys are stored as SPKI PEM and offered as SPKI DER, so equal bytes decide it without parsing
 * either key (the crypto worker imports the offered one, bench/README.md, handshake). Other encodings of the
 * same key still match through a parsed comparison.
 */
function registeredKeyIfOffered(storedPem: string, offeredDer: Uint8Array): Uint8Array | undefined {
  try {
    if (pemBody(storedPem).equals(offeredDer)) return offeredDer;
    return createPublicKey(storedPem).equals(importDevicePublicKey(offeredDer)) ? offeredDer : undefined;
  } catch {
    return undefined;
  }
}

/** Logs why a connection ended, at a level that matches whose doing it was; returns the reason to count. */
function endReason(
  error: unknown,
  log: Logger,
  context: { ip: string; deviceId: string | undefined; closedFor?: CloseReason | undefined },
): CloseReason {
  const { closedFor, ...details } = context;
  if (error instanceof SessionEnd) {
    // When the gateway closed the session itself (replaced, fenced), that is the reason, not what the loop saw.
    const reason = closedFor ?? error.reason;
    const level =
      reason === "device_closed" || reason === "goodbye" || reason === "replaced" ? "info" : "warn";
    log[level](
      { ...details, reason, detail: error.message === reason ? undefined : error.message },
      "device connection closed",
    );
    return reason;
  }
  log.error({ err: error, ...details }, "device connection failed");
  return "bad_frame";
}

/** Options of {@link runDeviceSession}. */
export interface RunDeviceSessionOptions {
  readonly transport: DeviceTransport;
  readonly context: ConnectionContext;
  readonly remoteAddress: string;
  /**
   * The device, from its Hello: over TCP the handshake already named and authenticated it; over UDP the Hello
   * names it and this checks that the DTLS peer key is the one registered for that ID (throws SessionEnd).
   */
  readonly device: (hello: HelloPayload) => Promise<SessionDevice>;
  /**
   * A session restored from the database after a restart: the device is mid-session and sends no Hello, so
   * the session starts from this row. @see issue 12 "Sessions that survive"
   */
  readonly resumed?: SessionDevice;
}

/**
 * The device session from the Hello to the end, the same over every transport: presence, the message loop,
 * offline. Never throws; returns why it ended (already logged). @see spec/device-protocols.md B.4–B.6
 */
export async function runDeviceSession(options: RunDeviceSessionOptions): Promise<CloseReason> {
  const { transport, context, remoteAddress: ip } = options;
  const { limits, logger: log } = context;
  // Only what the loop needs stays alive while the device is idle: the opening's locals (the Hello, the row,
  // the facts) belong to `openSession`, whose frame is gone once it returns (bench/README.md, connections).
  const opening: Opening = { session: undefined, lease: undefined, deviceId: undefined };
  let reason: CloseReason;
  try {
    const session = await openSession(options, opening);
    for (;;) {
      let message: DeviceMessage;
      try {
        message = await transport.next(limits.idleTimeoutMs, "idle_timeout", session);
      } catch (error) {
        // A UDP device need not speak for a while (the gcc build never pings): ask before giving up on it.
        if (
          error instanceof SessionEnd &&
          error.reason === "idle_timeout" &&
          (await transport.stillThere?.())
        )
          continue;
        throw error;
      }
      await session.handle(message);
    }
  } catch (error) {
    reason = endReason(error, log, {
      ip,
      deviceId: opening.deviceId,
      closedFor: opening.session?.closeReason,
    });
  }
  const { session: ended, lease } = opening;
  if (ended) {
    ended.close();
    // Only the holder of the current epoch takes the device offline and says so.
    await context.registry
      .end(ended, lease)
      .then(async (current) => {
        if (!current) return;
        await ended.refresh();
        await ended.publish({ name: "spark/status", data: "offline", ttl: 60, isPublic: false });
      })
      .catch((error: unknown) =>
        log.error({ err: error, ip, deviceId: opening.deviceId }, "could not mark the device offline"),
      );
  } else {
    transport.channel.close();
  }
  return reason;
}

/** What {@link openSession} got to before it returned or failed, for the end of the session. */
interface Opening {
  session: DeviceSession | undefined;
  lease: SessionLease | undefined;
  deviceId: string | undefined;
}

/** The Hello, the device, the registration (a new epoch) and `online`: a session ready for its loop. */
async function openSession(options: RunDeviceSessionOptions, opening: Opening): Promise<DeviceSession> {
  const { transport, context, remoteAddress: ip } = options;
  const { services, limits, logger: log } = context;
  const { channel } = transport;
  const hello = options.resumed ? undefined : await transport.next(limits.helloTimeoutMs, "hello_timeout");
  if (hello && hello.kind !== "hello") throw new SessionEnd("bad_frame", `expected Hello, got ${hello.kind}`);
  // A new session's opening takes its turn with the connections in progress, ahead of them: the traffic of
  // devices already in session (their claims above all) comes first in a storm.
  if (hello) await context.handshakeSteps?.run(noStep, "opening");
  const device = options.resumed ?? (hello ? await options.device(hello.hello) : undefined);
  if (!device) throw new SessionEnd("bad_frame", "no Hello");
  opening.deviceId = device.id;
  const id = device.id;
  const now = services.config.clock();
  // The Hello's update below writes `last_heard`, so the session's first message need not write it again.
  const session = new DeviceSession({ channel, context, device, log, heardAt: now });
  opening.session = session;
  const hasProduct =
    hello !== undefined &&
    hello.hello.productId !== 0 &&
    hello.hello.productId !== 0xffff &&
    hello.hello.productId !== hello.hello.platformId;
  // Before the platform is stored as confirmed, so that a confirmed platform means the product was checked.
  if (hello && device.product_id !== null)
    await leaveProductOfOtherPlatform(services, { deviceId: id, platformId: hello.hello.platformId, log });
  // A new session epoch: this connection is now the device's one live session, cluster-wide. A restored
  // session (no Hello) keeps the facts the device gave last time.
  const claimed = await context.registry.open(
    session,
    hello
      ? {
          last_handshake_at: now,
          last_heard: now,
          last_ip_address: ip,
          platform_id: hello.hello.platformId,
          platform_confirmed: 1,
          ...(hasProduct ? { firmware_version: hello.hello.productVersion } : {}),
          ...(hello.hello.layout === "3.x"
            ? { system_firmware_version: String(hello.hello.systemVersion) }
            : {}),
          updated_at: now,
        }
      : { last_heard: now, updated_at: now },
  );
  opening.lease = claimed.lease;
  session.registered(claimed);
  // The cloud answers the Hello once the device is registered: a device that has the answer is online.
  // UDP: the Hello is a CON request and the device waits for its ACK (docs/gen3-wire-format.md §4); TCP:
  // the device waits 4 s for the server's Hello (spec/device-protocols.md B.2 step 6).
  if (hello)
    session.send(
      channel.unreliable
        ? { kind: "ack", messageId: hello.messageId }
        : { kind: "server-hello", messageId: randomInt(0x10000), confirmable: false },
    );
  log.info(
    { ip, deviceId: id, platformId: hello?.hello.platformId, resumed: hello ? undefined : true },
    "device online",
  );
  await session.publish({ name: "spark/status", data: "online", ttl: 60, isPublic: false });
  if (hello && (hello.hello.flags & HELLO_FLAGS.DEVICE_INITIATED_DESCRIBE) === 0) session.requestDescribe();
  return session;
}

/**
 * Serves one Gen 2 device connection from the first byte to the last: handshake (spec B.2), then the session
 * ({@link runDeviceSession}) over a framed, encrypted channel, with a timeout on every wait. Never throws: every
 * failure closes the socket, is logged and counted. Works over any duplex stream, so tests can use an
 * in-memory pair.
 */
export function handleDeviceConnection(
  socket: Duplex,
  context: ConnectionContext,
  remoteAddress = "unknown",
): Promise<void> {
  // Each line names the device's address itself: a pino child logger per connection would cost every held
  // connection ~1.5 KB of heap (bench/README.md, connections).
  const ip = remoteAddress;
  const { admission } = context;
  // Before any work (the nonce, the RSA): a source past its limits is closed at once.
  const admitted = admission?.admit(ip) ?? "admitted";
  if (admitted !== "admitted") {
    socket.destroy();
    context.logger.debug({ ip, reason: admitted }, "device connection refused");
    context.closed(admitted);
    return Promise.resolve();
  }
  socket.on("error", context.onSocketError);
  // Chained rather than awaited: while the device is connected, nothing of the handshake stays alive.
  return handshake(socket, context, ip)
    .then(
      ({ device, transport }) => {
        admission?.finished(ip, false);
        return runDeviceSession({
          transport,
          context,
          remoteAddress,
          device: () => Promise.resolve(device),
        });
      },
      (error: unknown) => {
        socket.destroy();
        const reason = endReason(error, context.logger, {
          ip,
          deviceId: error instanceof HandshakeFailure ? error.deviceId : undefined,
        });
        if (admission?.finished(ip, reason !== "server_shutdown"))
          context.logger.warn(
            { ip, failures: context.limits.maxHandshakeFailuresPerAddress },
            "too many failed device handshakes from this address: its connections are refused for the rest of the window",
          );
        return reason;
      },
    )
    .then((reason) => context.closed(reason));
}

/** A handshake that failed, with the device it named (if it got that far). */
class HandshakeFailure extends SessionEnd {
  constructor(
    end: SessionEnd,
    readonly deviceId: string | undefined,
  ) {
    super(end.reason, end.message);
  }
}

/** A turn in {@link ConnectionContext.handshakeSteps}: the work is what follows the `await`. */
function noStep(): void {}

/** The handshake (spec B.2): the device authenticated, and the encrypted transport of its session. */
async function handshake(
  socket: Duplex,
  context: ConnectionContext,
  ip: string,
): Promise<{ device: SessionDevice; transport: TcpTransport }> {
  const { services, limits, logger: log } = context;
  const reader = new ByteReader(socket);
  let deviceId: string | undefined;
  try {
    // B.2 step 1: the nonce, at once.
    const nonce = randomBytesPooled(HANDSHAKE_NONCE_LENGTH);
    socket.write(nonce);
    const ciphertext = await reader
      .read(HANDSHAKE_CIPHERTEXT_LENGTH, {
        timeoutMs: limits.handshakeTimeoutMs,
        what: "the handshake ciphertext",
      })
      .catch((error: unknown) => {
        throw error instanceof DeviceTimeoutError
          ? new SessionEnd("handshake_timeout")
          : new SessionEnd("bad_handshake", String(error));
      });
    // B.2 step 3: decrypt (constant-time unpadding), check the nonce, read the ID and the offered key.
    let plaintext;
    try {
      plaintext = await context.crypto.openCiphertext(ciphertext, nonce);
    } catch (error) {
      throw new SessionEnd("bad_handshake", error instanceof Error ? error.message : String(error));
    }
    // Devices in session first: this handshake's next main-thread work waits for its turn.
    await context.handshakeSteps?.run(noStep, "start");
    deviceId = plaintext.deviceId;
    const id = plaintext.deviceId;
    const offered = plaintext.devicePublicKey;
    let device = await context.devices.forHandshake(id);
    let devicePublicKey: Uint8Array | undefined;
    if (!device) {
      if (!limits.autoRegister || !offered) {
        await recordAttempt(services, { deviceId: id, ip, reason: "unknown_device" });
        throw new SessionEnd("unknown_device");
      }
      await autoRegister(services, { deviceId: id, offered });
      device = await context.devices.forHandshake(id);
      if (!device) throw new SessionEnd("unknown_device");
      log.warn({ ip, deviceId: id }, "registered an unknown device's key (--auto-register-devices)");
      devicePublicKey = new Uint8Array(
        createPublicKey(device.public_key).export({ type: "spki", format: "der" }),
      );
    } else {
      devicePublicKey = offered && registeredKeyIfOffered(device.public_key, offered);
      if (!devicePublicKey) {
        await recordAttempt(services, { deviceId: id, ip, reason: "key_mismatch" });
        throw new SessionEnd("key_mismatch");
      }
    }
    // B.2 step 4: session credentials, encrypted to the device and signed by the server.
    const credentials = {
      key: randomBytesPooled(SESSION_KEY_LENGTH),
      iv: randomBytesPooled(SESSION_IV_LENGTH),
      salt: randomBytesPooled(SESSION_SALT_LENGTH),
    };
    let reply: Uint8Array;
    try {
      reply = await context.crypto.reply(devicePublicKey, credentials);
    } catch (error) {
      if (!(error instanceof DeviceKeyRefused)) throw error;
      await recordAttempt(services, { deviceId: id, ip, reason: "key_mismatch" });
      throw new SessionEnd("key_mismatch", error.message);
    }
    await context.handshakeSteps?.run(noStep, "reply");
    socket.write(reply);
    // B.2 step 6 and B.3: framed, encrypted CoAP from here on; the first message must be the Hello.
    const transport = new TcpTransport({
      socket,
      ciphers: new SessionCipherPair(credentials),
      maxFrameLength: limits.maxFrameLength,
      leftover: reader.detach(),
    });
    // The session keeps what it needs of the row, not the key.
    return {
      device: {
        id: device.id,
        owner_user_id: device.owner_user_id,
        owner_customer_id: device.owner_customer_id,
        product_id: device.product_id,
        variables: device.variables,
      },
      transport,
    };
  } catch (error) {
    reader.detach();
    if (error instanceof SessionEnd) throw new HandshakeFailure(error, deviceId);
    throw error;
  }
}

/**
 * A product holds devices of one platform (spec/cloud-api.md §4.5). A device whose Hello reports another
 * platform than its product's (it was imported on an assumed platform, or lied at registration) leaves the
 * product, as `DELETE /v1/products/:p/devices/:id` would take it out: a customer owner is released.
 */
async function leaveProductOfOtherPlatform(
  services: Services,
  options: { deviceId: string; platformId: number; log: { warn(object: object, message: string): void } },
): Promise<void> {
  const device = await services.devices.get(options.deviceId);
  if (!device || device.product_id === null) return;
  const product = await services.products.find(String(device.product_id));
  if (!product || product.platform_id === options.platformId) return;
  await services.devices.removeFromProduct({ device, deny: false });
  options.log.warn(
    {
      deviceId: device.id,
      productId: product.id,
      platformId: options.platformId,
      productPlatformId: product.platform_id,
    },
    "device reports another platform than its product's; removed from the product",
  );
}

/** Records a refused connection attempt (unknown device, wrong key) for the device's owner to see. */
export async function recordAttempt(
  services: Services,
  attempt: { deviceId: string; ip: string; reason: string },
): Promise<void> {
  await services.db
    .insertInto("device_connection_attempts")
    .values({
      id: randomBytes(16).toString("hex"),
      device_id: attempt.deviceId,
      ip: attempt.ip,
      outcome: "refused",
      reason: attempt.reason,
      at: services.config.clock(),
    })
    .execute();
  // Anyone can connect with any device ID: each ID keeps only its newest refusals (the sweep bounds the rest).
  await services.retention.capKey({
    table: "device_connection_attempts",
    key: "device_id",
    value: attempt.deviceId,
    keep: services.config.retention.maxConnectionAttemptsPerDevice,
  });
}

async function autoRegister(
  services: Services,
  options: { deviceId: string; offered: Uint8Array },
): Promise<void> {
  const pem = createPublicKey({ key: Buffer.from(options.offered), format: "der", type: "spki" })
    .export({ type: "spki", format: "pem" })
    .toString();
  const now = services.config.clock();
  await services.db
    .insertInto("devices")
    .values({
      id: options.deviceId,
      public_key: pem,
      key_algorithm: "rsa",
      registered_by_user_id: null,
      product_id: null,
      platform_id: 6,
      created_at: now,
      updated_at: now,
    })
    .onConflict((oc) => oc.column("id").doNothing())
    .execute();
}
