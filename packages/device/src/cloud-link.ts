import type { KeyObject } from "node:crypto";
import { createPublicKey } from "node:crypto";
import { createSocket } from "node:dgram";
import type { Socket as UdpSocket } from "node:dgram";
import { EventEmitter } from "node:events";
import { connect } from "node:net";
import type { Socket } from "node:net";

import type { DeviceMessage, HelloPayload, ServerMessage, VariableValue } from "@roost/protocol";
import {
  COAP_CODES,
  COAP_RELIABILITY,
  CoapReliability,
  decodeMessage,
  DESCRIBE_FLAGS,
  encodeFrame,
  encodeFunctionResult,
  encodeMessage,
  encodeVariableValue,
  FrameSplitter,
  HANDSHAKE_NONCE_LENGTH,
  HANDSHAKE_REPLY_LENGTH,
  HELLO_FLAGS,
  maxTransmitWaitMs,
  messageIdSeedFromSalt,
  VARIABLE_TYPES,
} from "@roost/protocol";
import type { SessionCiphers } from "@roost/protocol/node";
import { createHandshakeCiphertext, createSessionCiphers, openHandshakeReply } from "@roost/protocol/node";

import { DtlsClient } from "./dtls-client.js";
import type { DtlsClientSession } from "./dtls-client.js";

/** A cloud function of the device's application: takes the argument, returns an int32. */
export type CloudFunction = (argument: string) => number | Promise<number>;

/** A cloud variable: read each time the cloud asks. */
export type CloudVariable = () => VariableValue;

/** What the device does while connected; the events an application or test can watch. */
export interface CloudLinkEvents {
  /** The session is up: handshake, Hello exchanged, system messages sent. */
  connected: [];
  /** The connection ended (by either side, or a timeout). */
  disconnected: [reason: string];
  /** An event arrived from the cloud through one of the device's subscriptions. */
  event: [name: string, data: string];
  /** The cloud confirmed the claim: the device cleared its claim code. */
  claimed: [];
  /** A function was called. */
  called: [name: string, argument: string];
  /** The cloud acknowledged our latest ping, after `roundTripMs` milliseconds (for monitoring and benchmarks). */
  pong: [roundTripMs: number];
  /** A reconnect is scheduled (with `reconnect`): attempt number and the delay before it, in ms. */
  reconnecting: [attempt: number, delayMs: number];
  /** UDP: a saved DTLS session was resumed (no handshake), or found dead and dropped (`false`). */
  resumed: [ok: boolean];
}

/** The transport under the session: Gen 2 (TCP, LightSSL, RSA) or Gen 3 (UDP, DTLS 1.2, P-256). */
export type CloudProtocol = "tcp" | "udp";

/** A Gen 3 device's saved session: the DTLS state and where its CoAP message IDs continue. */
export interface SavedCloudSession extends DtlsClientSession {
  readonly messageId: number;
}

/** Where a Gen 3 device keeps its session across resets (its DCT, or memory). */
export interface CloudSessionStore {
  load(): SavedCloudSession | undefined;
  /** `undefined` forgets it (the cloud ended it, or it is no longer answered). */
  save(session: SavedCloudSession | undefined): void;
}

/**
 * Saved message IDs and record sequence numbers run this far ahead of use, so that a device that dies without
 * saving never repeats either after it resumes.
 */
const MESSAGE_ID_BLOCK = 256;

/** One address of the cloud's device gateway. */
export interface GatewayAddress {
  readonly host: string;
  readonly port: number;
}

/** Reconnect back-off of a {@link CloudLink}: delays double from the first to the largest, each with ±25 % jitter. */
export interface ReconnectOptions {
  /** @default 1000 */
  readonly firstMs?: number;
  /** @default 30000 */
  readonly maxMs?: number;
}

/** Options of {@link CloudLink}. */
export interface CloudLinkOptions {
  /** Gateway address. */
  host: string;
  /** Gateway port. @default 5683 */
  port?: number;
  /**
   * More gateway addresses (other nodes), tried in turn when one refuses or fails, as a device behind
   * several cloud addresses would. `host:port` comes first. @default none
   */
  fallbacks?: readonly GatewayAddress[];
  /**
   * Reconnect by itself when an established session ends (the node died, the network dropped), with
   * back-off and jitter through every address, until {@link CloudLink.close}. @default off
   */
  reconnect?: ReconnectOptions | boolean;
  /**
   * Local address to connect from (a loopback alias such as 127.0.0.7): many devices of one machine spread
   * over several source addresses so that they do not run out of ephemeral ports. @default the system's choice
   */
  localAddress?: string;
  /** 24-hex device ID. */
  deviceId: string;
  /** The device's RSA-1024 private key. */
  privateKey: KeyObject;
  /** The cloud's RSA-2048 public key. */
  serverPublicKey: KeyObject;
  /** Platform: 6 Photon, 8 P1. @default 6 */
  platformId?: number;
  /** Product ID in the Hello (the platform ID when not a product firmware). @default platformId */
  productId?: number;
  /** Product firmware version in the Hello. @default 1 */
  productVersion?: number;
  /**
   * The transport: "tcp" (Gen 2: port 5683, RSA keys) or "udp" (Gen 3: port 5684, DTLS with P-256 keys, the
   * Connection ID, CoAP retransmission, session resumption). @default "tcp"
   */
  protocol?: CloudProtocol;
  /** UDP: where the DTLS session is kept to resume it after a reset or reconnect without a handshake. */
  sessionStore?: CloudSessionStore;
  /** UDP: first CoAP retransmission timeout, in ms. @default 4000 */
  ackTimeoutMs?: number;
  /** Device OS generation whose Hello to send. @default "2.x" over TCP, "3.x" over UDP */
  helloLayout?: "2.x" | "3.x";
  /** The stored claim code, read at each connect; empty or undefined when none. @see spec/device-protocols.md B.5 step 3 */
  claimCode?: () => string | undefined;
  /** Called when the cloud confirms the claim; the device must clear its code and set claimed. */
  onClaimed?: () => void;
  /** Application functions. */
  functions?: Record<string, CloudFunction>;
  /** Application variables. */
  variables?: Record<string, CloudVariable>;
  /** Application subscriptions (prefix, scope), besides the system ones (`spark`, `particle`). */
  subscriptions?: readonly { prefix: string; scope?: "my-devices" | "all-devices" }[];
  /** Ping after this much silence from the cloud, in ms. @default 15000 @see spec/device-protocols.md B.6 */
  pingIntervalMs?: number;
  /** Give up when nothing arrives this long after a ping, in ms. @default 10000 (TCP); 90000 (UDP: MAX_TRANSMIT_WAIT) */
  pingTimeoutMs?: number;
  /** Timeout of each handshake step and of the server Hello, in ms. @default 20000 (Hello: 4000) */
  handshakeTimeoutMs?: number;
  /** The reset reason sent once as `spark/device/last_reset`, if any. */
  lastResetReason?: string;
}

const SYSTEM_SUBSCRIPTIONS = ["spark", "particle"];
const CLAIM_EVENT_PREFIX = "spark/device/claim/";

/**
 * The device side of the Gen 2 cloud protocol over TCP: handshake, Hello, the connect sequence of a
 * Device OS 2.3 Photon (spec B.5), pings, events both ways, functions, variables, describe, signal.
 * One instance is one device: with `reconnect` it comes back by itself after a session ends, trying each
 * gateway address in turn; without it, reconnecting is the caller's job (the virtual device does it).
 */
export class CloudLink extends EventEmitter<CloudLinkEvents> {
  readonly #options: Required<
    Omit<
      CloudLinkOptions,
      | "claimCode"
      | "onClaimed"
      | "lastResetReason"
      | "fallbacks"
      | "reconnect"
      | "sessionStore"
      | "localAddress"
    >
  > &
    Pick<CloudLinkOptions, "claimCode" | "onClaimed" | "lastResetReason" | "sessionStore" | "localAddress">;
  readonly #addresses: readonly GatewayAddress[];
  readonly #reconnect: Required<ReconnectOptions> | undefined;
  /** The address of the latest session (tried first next time). */
  #preferred = 0;
  #attempt = 0;
  #retry: NodeJS.Timeout | undefined;
  /** Closed by the application: no more reconnects. */
  #stopped = false;
  /** Inside {@link CloudLink.connect}: failed attempts do not emit `disconnected` one by one. */
  #connecting = false;
  #socket: Socket | undefined;
  #ciphers: SessionCiphers | undefined;
  /** UDP: the datagram socket and the DTLS client of the current session. */
  #udp: UdpSocket | undefined;
  #dtls: DtlsClient | undefined;
  /** Sends one encoded CoAP message over the current session; undefined until the session's keys are known. */
  #transmit: ((message: Uint8Array) => void) | undefined;
  /** UDP: CoAP's retransmissions and duplicate detection over the current DTLS session. */
  #coap: CoapReliability | undefined;
  #messageId = 0;
  #token = 0;
  #lastReceived = Date.now();
  #pingSentAt: number | undefined;
  /** The latest ping still waiting for its ACK: its message ID and when it left, in `performance.now()` ms. */
  #pingProbe: { messageId: number; sentAt: number } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #signaling = false;
  readonly #pendingTime = new Map<number, (seconds: number) => void>();

  constructor(options: CloudLinkOptions) {
    super();
    const platformId = options.platformId ?? 6;
    const protocol = options.protocol ?? "tcp";
    this.#options = {
      port: protocol === "udp" ? 5684 : 5683,
      platformId,
      productId: platformId,
      productVersion: 1,
      protocol,
      ackTimeoutMs: COAP_RELIABILITY.ackTimeoutMs,
      helloLayout: protocol === "udp" ? "3.x" : "2.x",
      functions: {},
      variables: {},
      subscriptions: [],
      pingIntervalMs: 15_000,
      // Over UDP a ping is a CON: its retransmissions decide, within MAX_TRANSMIT_WAIT. @see RFC 7252 §4.8.2
      pingTimeoutMs: protocol === "udp" ? maxTransmitWaitMs(options.ackTimeoutMs) : 10_000,
      handshakeTimeoutMs: 20_000,
      ...options,
    };
    this.#addresses = [{ host: this.#options.host, port: this.#options.port }, ...(options.fallbacks ?? [])];
    const reconnect = options.reconnect === true ? {} : options.reconnect || undefined;
    this.#reconnect = reconnect && { firstMs: 1000, maxMs: 30_000, ...reconnect };
  }

  /** The gateway address of the current (or latest) session. */
  get address(): GatewayAddress {
    return this.#addresses[this.#preferred] ?? { host: this.#options.host, port: this.#options.port };
  }

  /** True while a session is up. */
  get connected(): boolean {
    return !this.#closed && this.#transmit !== undefined;
  }

  /**
   * Connects, runs the handshake and the connect sequence; resolves once the session is up. Tries each
   * gateway address in turn, the latest good one first; rejects with the last failure when none answers.
   */
  async connect(): Promise<void> {
    this.#stopped = false;
    clearTimeout(this.#retry);
    let failure: unknown;
    this.#connecting = true;
    try {
      for (let offset = 0; offset < this.#addresses.length; offset++) {
        const index = (this.#preferred + offset) % this.#addresses.length;
        try {
          await this.#connectTo(this.#addresses[index] as GatewayAddress);
          this.#preferred = index;
          this.#attempt = 0;
          return;
        } catch (error) {
          failure = error;
          if (this.#stopped) break;
        }
      }
    } finally {
      this.#connecting = false;
    }
    const reason = failure instanceof Error ? failure.message : String(failure);
    this.emit("disconnected", reason);
    this.#scheduleReconnect();
    throw failure;
  }

  #scheduleReconnect(): void {
    const reconnect = this.#reconnect;
    if (!reconnect || this.#stopped) return;
    const delay = Math.round(
      Math.min(reconnect.maxMs, reconnect.firstMs * 2 ** this.#attempt) * (0.75 + Math.random() / 2),
    );
    this.#attempt += 1;
    this.emit("reconnecting", this.#attempt, delay);
    clearTimeout(this.#retry);
    this.#retry = setTimeout(() => {
      // A failed attempt schedules the next one itself.
      this.connect().catch(() => undefined);
    }, delay);
  }

  /** True while the signal (rainbow LED) is on. */
  get signaling(): boolean {
    return this.#signaling;
  }

  /** One connection to one address: handshake, Hello, connect sequence. */
  async #connectTo(address: GatewayAddress): Promise<void> {
    this.#closed = false;
    this.#ciphers = undefined;
    this.#transmit = undefined;
    this.#pingSentAt = undefined;
    this.#pingProbe = undefined;
    this.#lastReceived = Date.now();
    this.#pendingTime.clear();
    if (this.#options.protocol === "udp") return this.#connectUdp(address);
    const options = this.#options;
    const socket = connect({
      host: address.host,
      port: address.port,
      noDelay: true,
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    });
    this.#socket = socket;
    const incoming: Buffer[] = [];
    let incomingLength = 0;
    let wake: (() => void) | undefined;
    let ended: string | undefined;
    socket.on("data", (chunk: Buffer) => {
      incoming.push(chunk);
      incomingLength += chunk.length;
      wake?.();
    });
    socket.on("close", () => {
      ended ??= "closed by the cloud";
      wake?.();
      if (this.#socket === socket) this.#shutdown(ended);
    });
    socket.on("error", (error) => {
      ended = error.message;
    });
    const read = async (
      length: number,
      what: string,
      timeoutMs = options.handshakeTimeoutMs,
    ): Promise<Uint8Array> => {
      const deadline = Date.now() + timeoutMs;
      while (incomingLength < length) {
        if (ended) throw new Error(`connection ended before ${what}: ${ended}`);
        const remaining = deadline - Date.now();
        if (remaining <= 0) throw new Error(`timed out waiting for ${what}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, remaining);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      const all = Buffer.concat(incoming, incomingLength);
      incoming.length = 0;
      const rest = all.subarray(length);
      if (rest.length > 0) incoming.push(rest);
      incomingLength = rest.length;
      return new Uint8Array(all.subarray(0, length));
    };
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("error", reject);
      });
      // B.2 steps 1–5.
      const nonce = await read(HANDSHAKE_NONCE_LENGTH, "the nonce");
      const publicKeyDer = new Uint8Array(
        createPublicKey(options.privateKey).export({ type: "spki", format: "der" }),
      );
      socket.write(
        createHandshakeCiphertext({
          nonce,
          deviceId: options.deviceId,
          devicePublicKey: publicKeyDer,
          serverPublicKey: options.serverPublicKey,
        }),
      );
      const reply = await read(HANDSHAKE_REPLY_LENGTH, "the handshake reply");
      const credentials = openHandshakeReply({
        reply,
        devicePrivateKey: options.privateKey,
        serverPublicKey: options.serverPublicKey,
      });
      const ciphers = createSessionCiphers(credentials);
      this.#ciphers = ciphers;
      this.#transmit = (message) => socket.write(encodeFrame(ciphers.send.encrypt(message)));
      this.#messageId = messageIdSeedFromSalt(credentials.salt);

      // B.2 step 6: our Hello, then the server's within 4 s.
      this.#send({ kind: "hello", messageId: this.#nextId(), confirmable: false, hello: this.#hello() });
      const splitter = new FrameSplitter({ maxFrameLength: 4096 });
      const take = (chunk: Uint8Array) => {
        for (const frame of splitter.push(chunk)) {
          const ciphers = this.#ciphers;
          if (!ciphers) return;
          this.#lastReceived = Date.now();
          this.#pingSentAt = undefined;
          void this.#handle(decodeMessage(ciphers.receive.decrypt(frame), "server")).catch((error: unknown) =>
            this.#shutdown(`bad message: ${String(error)}`),
          );
        }
      };
      const serverHello = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("timed out waiting for the server Hello")), 4000);
        this.#onServerHello = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      socket.removeAllListeners("data");
      socket.on("data", (chunk: Buffer) => {
        try {
          take(new Uint8Array(chunk));
        } catch (error) {
          this.#shutdown(`bad frame: ${String(error)}`);
        }
      });
      const leftover = Buffer.concat(incoming, incomingLength);
      if (leftover.length > 0) take(new Uint8Array(leftover));
      await serverHello;
      this.#opened();
    } catch (error) {
      this.#shutdown(error instanceof Error ? error.message : String(error));
      throw error;
    }
  }

  #onServerHello: (() => void) | undefined;

  /** Our Hello, in the layout of the Device OS generation we play. @see spec/device-protocols.md B.4 (Hello) */
  #hello(): HelloPayload {
    const options = this.#options;
    const flags =
      HELLO_FLAGS.DIAGNOSTICS |
      HELLO_FLAGS.IMMEDIATE_UPDATES |
      HELLO_FLAGS.GOODBYE |
      HELLO_FLAGS.DEVICE_INITIATED_DESCRIBE;
    // Over UDP the Hello names the device: the DTLS handshake does not. @see docs/gen3-wire-format.md §4
    const deviceId = options.protocol === "udp" ? { deviceId: options.deviceId } : {};
    return options.helloLayout === "3.x"
      ? {
          layout: "3.x",
          productId: options.productId,
          productVersion: options.productVersion,
          flags,
          platformId: options.platformId,
          systemVersion: options.protocol === "udp" ? 5100 : 3000,
          maxMessageSize: options.protocol === "udp" ? 1024 : 1500,
          maxBinarySize: 1_048_576,
          otaChunkSize: 512,
          ...deviceId,
        }
      : {
          layout: "2.x",
          productId: options.productId,
          productVersion: options.productVersion,
          flags,
          platformId: options.platformId,
          ...deviceId,
        };
  }

  /**
   * The Gen 3 session over UDP: resume the saved DTLS session with a CoAP ping if there is one (no handshake,
   * no Hello: nothing changed, as Device OS does after a reset); else, or when the cloud does not answer it, a
   * full DTLS handshake (with a Connection ID), the confirmable Hello and the connect sequence.
   * @see docs/gen3-wire-format.md
   */
  async #connectUdp(address: GatewayAddress): Promise<void> {
    const options = this.#options;
    const socket = createSocket("udp4");
    this.#udp = socket;
    socket.on("error", (error) => {
      if (this.#udp === socket) this.#shutdown(error.message);
    });
    let dtls: DtlsClient | undefined;
    socket.on("message", (datagram) => dtls?.receive(new Uint8Array(datagram)));
    const clientOptions = {
      privateKey: options.privateKey,
      serverPublicKey: options.serverPublicKey,
      send: (datagram: Uint8Array) => {
        if (this.#udp === socket) socket.send(datagram, address.port, address.host);
      },
    };
    const useClient = (client: DtlsClient) => {
      dtls = client;
      this.#dtls = client;
      const coap = new CoapReliability({
        send: (message) => client.send(message),
        ackTimeoutMs: options.ackTimeoutMs,
      });
      this.#coap = coap;
      client.onData = (content) => this.#receiveUdp(content);
      client.onClose = (reason) => {
        // The cloud ended the session: it cannot be resumed (and is not saved again on the way down).
        options.sessionStore?.save(undefined);
        client.close();
        if (this.#dtls === client) this.#dtls = undefined;
        this.#shutdown(`DTLS ${reason} from the cloud`);
      };
      client.onReserve = () => this.#saveSession(MESSAGE_ID_BLOCK);
      this.#transmit = (message) => this.#sendUdp(coap, message);
    };
    try {
      const saved = options.sessionStore?.load();
      if (saved) {
        useClient(DtlsClient.resume(clientOptions, saved));
        this.#messageId = saved.messageId & 0xffff;
        this.#saveSession(MESSAGE_ID_BLOCK);
        const answered = await this.#confirm({ kind: "ping", messageId: this.#nextId() });
        this.emit("resumed", answered);
        if (answered) {
          this.#startKeepAlive();
          this.emit("connected");
          return;
        }
        // Nobody holds the session any more (Device OS gives up after 3 unanswered resumptions).
        options.sessionStore?.save(undefined);
        this.#stopRetransmissions();
        this.#transmit = undefined;
        this.#closed = false;
      }
      const client = new DtlsClient(clientOptions);
      dtls = client;
      this.#dtls = client;
      client.start();
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          client.ready,
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new Error("timed out waiting for the DTLS handshake")),
              options.handshakeTimeoutMs,
            );
          }),
        ]);
      } finally {
        clearTimeout(timer);
        client.close();
      }
      useClient(client);
      this.#messageId = Math.floor(Math.random() * 0x10000);
      this.#saveSession(MESSAGE_ID_BLOCK);
      // The Hello is a CON over UDP: the cloud's ACK is its answer. @see docs/gen3-wire-format.md §4
      const helloAcked = await this.#confirm({
        kind: "hello",
        messageId: this.#nextId(),
        confirmable: true,
        hello: this.#hello(),
      });
      if (!helloAcked) throw new Error("the cloud did not acknowledge the Hello");
      this.#opened();
    } catch (error) {
      this.#shutdown(error instanceof Error ? error.message : String(error));
      throw error;
    }
  }

  /** Sends a CON and resolves whether it was acknowledged (within the CoAP retransmissions). */
  #confirm(message: DeviceMessage): Promise<boolean> {
    const bytes = encodeMessage(message);
    const coap = this.#coap;
    if (!coap || !this.#dtls || this.#closed) return Promise.resolve(false);
    return new Promise((resolve) => this.#sendUdp(coap, bytes, resolve));
  }

  /** Saves the session with the message ID `ahead` of the current one (a reservation, or exact when closing). */
  #saveSession(ahead: number): void {
    const session = this.#dtls?.session;
    if (!session || !this.#options.sessionStore) return;
    this.#options.sessionStore.save({ ...session, messageId: (this.#messageId + ahead) & 0xffff });
  }

  /** One CoAP message in one DTLS record; our CONs are retransmitted until acknowledged or given up. */
  #sendUdp(coap: CoapReliability, message: Uint8Array, acked?: (ok: boolean) => void): void {
    // A CON nobody acknowledges ends the session, as on a device. @see Device OS coap_channel.h
    coap.send(message, acked ?? ((ok) => ok || this.#shutdown("no acknowledgement from the cloud")));
  }

  #stopRetransmissions(): void {
    this.#coap?.stop(true);
  }

  /** One CoAP message from the cloud: ends a retransmission, or is answered again if repeated, or handled. */
  #receiveUdp(content: Uint8Array): void {
    this.#lastReceived = Date.now();
    this.#pingSentAt = undefined;
    // An RST, or a CON seen before (answered again from our reply), is not for the session.
    if (this.#coap && !this.#coap.receive(content)) return;
    let message: ServerMessage;
    try {
      message = decodeMessage(content, "server");
    } catch {
      // A message we cannot read is dropped, as Device OS does; the session goes on.
      return;
    }
    void this.#handle(message).catch((error: unknown) => this.#shutdown(`bad message: ${String(error)}`));
  }

  /** The session is up (Hello answered): the connect sequence, then keep-alive; `connected`. */
  #opened(): void {
    this.#connectSequence();
    this.#startKeepAlive();
    this.emit("connected");
  }

  #startKeepAlive(): void {
    const options = this.#options;
    clearInterval(this.#timer);
    this.#timer = setInterval(() => this.#keepAlive(), Math.min(1000, options.pingIntervalMs / 3));
  }

  /** B.5: what a Device OS 2.3 Photon sends after the Hello exchange, in order. */
  #connectSequence(): void {
    const options = this.#options;
    this.#describe(DESCRIBE_FLAGS.SYSTEM);
    const code = options.claimCode?.();
    if (code && code.length > 0 && code.charCodeAt(0) !== 0xff)
      // Over UDP as a CON, retransmitted until acknowledged: a lost claim code would leave the device unclaimed.
      this.publish("spark/device/claim/code", code, {
        private: true,
        confirmable: options.protocol === "udp",
      });
    this.publish("spark/hardware/max_binary", "1048576", { private: true });
    this.publish("spark/hardware/ota_chunk_size", "512", { private: true });
    if (options.lastResetReason)
      this.publish("spark/device/last_reset", options.lastResetReason, { private: true });
    this.publish("particle/device/updates/enabled", "true", { private: true });
    this.publish("particle/device/updates/forced", "false", { private: true });
    this.#send({ kind: "time-request", messageId: this.#nextId(), token: this.#nextToken() });
    this.#describe(DESCRIBE_FLAGS.APPLICATION);
    for (const prefix of SYSTEM_SUBSCRIPTIONS)
      this.#send({
        kind: "subscribe",
        messageId: this.#nextId(),
        filter: prefix,
        scope: { kind: "my-devices" },
      });
    for (const subscription of options.subscriptions) {
      this.#send({
        kind: "subscribe",
        messageId: this.#nextId(),
        filter: subscription.prefix,
        scope: { kind: subscription.scope ?? "my-devices" },
      });
    }
  }

  /** The describe JSON of this device. @see spec/device-protocols.md B.4 (Describe JSON) */
  description(flags: number): string {
    const options = this.#options;
    const body: Record<string, unknown> = { p: options.platformId };
    if (flags & DESCRIBE_FLAGS.APPLICATION) {
      body.f = Object.keys(options.functions);
      body.v = Object.fromEntries(
        Object.entries(options.variables).map(([name, read]) => [name, VARIABLE_TYPES[read().type]]),
      );
    }
    if (flags & DESCRIBE_FLAGS.SYSTEM)
      body.m = [{ s: 262_144, l: "m", vc: 30, vv: 30, f: "s", n: "1", v: 2300, d: [] }];
    return JSON.stringify(body);
  }

  #describe(flags: number): void {
    this.#send({
      kind: "describe-post",
      messageId: this.#nextId(),
      flags,
      description: this.description(flags),
    });
  }

  /** Publishes an event (NON; private unless told otherwise). */
  publish(
    name: string,
    data = "",
    options: { private?: boolean; ttl?: number; confirmable?: boolean } = {},
  ): void {
    this.#send({
      kind: "event",
      messageId: this.#nextId(),
      confirmable: options.confirmable ?? false,
      visibility: options.private === false ? "public" : "private",
      name,
      ttl: options.ttl ?? 60,
      data,
    });
  }

  /** Asks the cloud for the time; resolves with Unix seconds. */
  requestTime(): Promise<number> {
    const token = this.#nextToken();
    const answer = new Promise<number>((resolve) => this.#pendingTime.set(token, resolve));
    this.#send({ kind: "time-request", messageId: this.#nextId(), token });
    return answer;
  }

  /** Sends a ping now (normally sent after 15 s of silence). */
  ping(): void {
    this.#pingSentAt = Date.now();
    const messageId = this.#nextId();
    this.#pingProbe = { messageId, sentAt: performance.now() };
    this.#send({ kind: "ping", messageId });
  }

  /** Closes the connection and stops reconnecting. */
  close(reason = "closed by the device"): void {
    this.#stopped = true;
    clearTimeout(this.#retry);
    this.#shutdown(reason);
  }

  async #handle(message: ServerMessage): Promise<void> {
    const options = this.#options;
    switch (message.kind) {
      case "server-hello":
        if (message.confirmable) this.#send({ kind: "ack", messageId: message.messageId });
        this.#onServerHello?.();
        this.#onServerHello = undefined;
        return;
      case "ping":
        this.#send({ kind: "ack", messageId: message.messageId });
        return;
      case "ack": {
        const probe = this.#pingProbe;
        if (probe?.messageId === message.messageId) {
          this.#pingProbe = undefined;
          this.emit("pong", performance.now() - probe.sentAt);
        }
        return;
      }
      case "event":
        if (message.name.startsWith(CLAIM_EVENT_PREFIX)) {
          // B.5: any spark/device/claim/* event clears the stored code and sets claimed.
          options.onClaimed?.();
          this.emit("claimed");
        }
        this.emit("event", message.name, message.data);
        return;
      case "time-response": {
        const resolve = this.#pendingTime.get(message.token);
        this.#pendingTime.delete(message.token);
        resolve?.(message.unixSeconds);
        return;
      }
      case "describe-request":
        this.#send({ kind: "ack", messageId: message.messageId });
        this.#send({
          kind: "response",
          type: "CON",
          code: COAP_CODES.CONTENT,
          messageId: this.#nextId(),
          token: message.token,
          payload: new TextEncoder().encode(this.description(message.flags)),
        });
        return;
      case "function-call": {
        this.#send({ kind: "ack", messageId: message.messageId });
        const fn = options.functions[message.name];
        this.emit("called", message.name, message.argument);
        if (!fn) {
          this.#respond(message.token, COAP_CODES.NOT_FOUND);
          return;
        }
        const value = await fn(message.argument);
        this.#respond(message.token, COAP_CODES.CHANGED, encodeFunctionResult(value));
        return;
      }
      case "variable-request": {
        this.#send({ kind: "ack", messageId: message.messageId });
        const read = options.variables[message.name];
        if (!read) {
          this.#respond(message.token, COAP_CODES.NOT_FOUND);
          return;
        }
        this.#respond(message.token, COAP_CODES.CONTENT, encodeVariableValue(read()));
        return;
      }
      case "signal":
        this.#signaling = message.start;
        this.#send({
          kind: "response",
          type: "ACK",
          code: COAP_CODES.CHANGED,
          messageId: message.messageId,
          token: message.token,
          payload: new Uint8Array(0),
        });
        return;
      case "response":
        return;
    }
  }

  #keepAlive(): void {
    const options = this.#options;
    const now = Date.now();
    if (this.#pingSentAt !== undefined) {
      if (now - this.#pingSentAt > options.pingTimeoutMs) this.#shutdown("ping timeout");
      return;
    }
    if (now - this.#lastReceived >= options.pingIntervalMs) this.ping();
  }

  #send(message: DeviceMessage): void {
    if (this.#closed) return;
    this.#transmit?.(encodeMessage(message));
  }

  /** A separate NON response to a cloud request, carrying the request's token. @see spec/device-protocols.md B.4 */
  #respond(token: number, code: number, payload: Uint8Array = new Uint8Array(0)): void {
    this.#send({ kind: "response", type: "NON", code, messageId: this.#nextId(), token, payload });
  }

  #nextId(): number {
    this.#messageId = (this.#messageId + 1) & 0xffff;
    return this.#messageId;
  }

  #nextToken(): number {
    this.#token = (this.#token + 1) & 0xff;
    return this.#token;
  }

  #shutdown(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#socket?.destroy();
    if (this.#udp) {
      // No close_notify: like a device that resets, keep the session to resume it. Save where it stands.
      this.#saveSession(1);
      this.#stopRetransmissions();
      this.#dtls?.close();
      this.#udp.close();
      this.#udp = undefined;
      this.#dtls = undefined;
    }
    // While connect() is still trying addresses, it reports the outcome once.
    if (this.#connecting) return;
    this.emit("disconnected", reason);
    this.#scheduleReconnect();
  }
}
