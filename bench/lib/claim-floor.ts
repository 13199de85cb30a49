// The floor of the claim scenario: what a Node server on this machine can give a claim in a storm of
// connecting devices when it does nothing that is not the storm's own unavoidable work. Both sides do the
// handshake's real RSA (spec/device-protocols.md B.2 steps 2–5; the server's private-key work in Roost's own
// crypto worker pool, at its default size and priority), and move the same bytes in the same writes as a
// Photon's start with a claim code; there is no session cipher, no CoAP, no database and no claim
// transaction. When a device's connect burst has arrived, the server writes its `spark/status online` to the
// owner's event stream (plain `node:http`, the events of one turn in one chunk). Run by
// bench/processes/claim-floor.ts on both sides.
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { createServer as createHttpServer } from "node:http";
import type { Server as HttpServer, ServerResponse } from "node:http";
import { connect, createServer } from "node:net";
import type { Server, Socket } from "node:net";

import { startCryptoPool } from "@roost/cloud";
import type { HandshakeCrypto } from "@roost/cloud";
import {
  HANDSHAKE_CIPHERTEXT_LENGTH,
  HANDSHAKE_NONCE_LENGTH,
  HANDSHAKE_REPLY_LENGTH,
  SESSION_IV_LENGTH,
  SESSION_KEY_LENGTH,
  SESSION_SALT_LENGTH,
} from "@roost/protocol";
import { createHandshakeCiphertext, openHandshakeReply } from "@roost/protocol/node";

import type { DeviceConnectResult } from "../processes/device-fleet.js";
import { wallClock } from "./child.js";

/** The Hello each way: one 18-byte frame (spec B.3). */
const HELLO_LENGTH = 18;
/**
 * The connect sequence a `CloudLink` with a claim code writes in one burst: the 402 bytes of
 * GEN2_CONNECT_EXCHANGE and the claim event's frame (~114 bytes: a 63-character code, padded to AES blocks).
 */
const CONNECT_BURST_LENGTH = 402 + 114;
/** The gateway's answers: three, then two acknowledgements, and the claim's confirmation. */
const ANSWER_LENGTHS = [54, 36, 114] as const;
const ANSWERS_LENGTH = ANSWER_LENGTHS.reduce((sum, length) => sum + length, 0);

/** Zeros to write: the floor allocates nothing per write. */
const zeros = Buffer.alloc(1024);

/** Reads exactly the lengths asked for, in order, from a socket's chunks however the kernel splits them. */
class Reader {
  #chunks: Buffer[] = [];
  #length = 0;
  #want: { length: number; resolve: (bytes: Buffer) => void; reject: (error: Error) => void } | undefined;
  #failure: Error | undefined;

  constructor(socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.#chunks.push(chunk);
      this.#length += chunk.length;
      this.#deliver();
    });
    socket.once("close", () => {
      this.#failure = new Error("connection closed");
      this.#want?.reject(this.#failure);
      this.#want = undefined;
    });
  }

  read(length: number): Promise<Buffer> {
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#want = { length, resolve, reject };
      this.#deliver();
    });
  }

  #deliver(): void {
    const want = this.#want;
    if (!want || this.#length < want.length) return;
    const all = this.#chunks.length === 1 ? (this.#chunks[0] as Buffer) : Buffer.concat(this.#chunks);
    this.#chunks = want.length < all.length ? [all.subarray(want.length)] : [];
    this.#length -= want.length;
    this.#want = undefined;
    want.resolve(all.subarray(0, want.length));
  }
}

/** A running floor server. */
export interface ClaimFloorServer {
  /** The gateway's port (127.0.0.1). */
  readonly port: number;
  /** The owner's event stream: any path of it. */
  readonly baseUrl: string;
  readonly serverPublicKeyPem: string;
  readonly workers: number;
  /** Connect bursts read (claims announced) so far. */
  bursts(): number;
  close(): Promise<void>;
}

/** Starts a floor server with a fresh server key; it encrypts every session to `devicePublicKeyPem`. */
export async function startClaimFloorServer(options: {
  devicePublicKeyPem: string;
  /** Crypto workers. @default one per core, as Roost's gateway */
  workers?: number;
}): Promise<ClaimFloorServer> {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const pool = startCryptoPool({ serverPrivateKey: privateKey, size: options.workers });
  const devicePublicKeyDer = new Uint8Array(
    createPublicKey(options.devicePublicKeyPem).export({ type: "spki", format: "der" }),
  );
  const open = new Set<Socket>();
  const streams = new Set<ServerResponse>();
  let gathered = "";
  let bursts = 0;
  const flush = () => {
    const chunk = gathered;
    gathered = "";
    for (const stream of streams) stream.write(chunk);
  };
  const announceOnline = (deviceId: string) => {
    if (gathered.length === 0) setImmediate(flush);
    const data = JSON.stringify({
      data: "online",
      ttl: 60,
      published_at: new Date().toISOString(),
      coreid: deviceId,
    });
    gathered += `event: spark/status\ndata: ${data}\n\n`;
  };
  // The gateway's socket options (gateway.ts): no Nagle delay, keep-alive probes after 15 s.
  const gateway = createServer({ noDelay: true }, (socket) => {
    socket.setKeepAlive(true, 15_000);
    open.add(socket);
    socket.on("close", () => open.delete(socket));
    socket.on("error", () => socket.destroy());
    serveDevice(socket, devicePublicKeyDer, pool)
      .then((deviceId) => {
        bursts += 1;
        announceOnline(deviceId);
        for (const length of ANSWER_LENGTHS) socket.write(zeros.subarray(0, length));
      })
      .catch(() => socket.destroy());
  });
  const http = createHttpServer((request, response) => {
    response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    response.write(":ok\n\n");
    streams.add(response);
    request.once("close", () => streams.delete(response));
  });
  const listen = (server: Server | HttpServer) =>
    new Promise<number>((resolve) =>
      server.listen(0, "127.0.0.1", () => {
        const address = server.address();
        resolve(typeof address === "object" && address ? address.port : 0);
      }),
    );
  const [port, httpPort] = await Promise.all([listen(gateway), listen(http)]);
  return {
    port,
    baseUrl: `http://127.0.0.1:${httpPort}`,
    serverPublicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
    workers: pool.workers,
    bursts: () => bursts,
    async close() {
      for (const socket of open) socket.destroy();
      for (const stream of streams) stream.end();
      http.closeAllConnections();
      await pool.close();
      await Promise.all(
        [gateway, http].map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
      );
    },
  };
}

/** The gateway's side of one connection, up to its connect burst; resolves with the authenticated device ID. */
async function serveDevice(
  socket: Socket,
  devicePublicKeyDer: Uint8Array,
  pool: HandshakeCrypto,
): Promise<string> {
  const reader = new Reader(socket);
  const nonce = randomBytes(HANDSHAKE_NONCE_LENGTH);
  socket.write(nonce);
  const plaintext = await pool.openCiphertext(await reader.read(HANDSHAKE_CIPHERTEXT_LENGTH), nonce);
  const reply = await pool.reply(devicePublicKeyDer, {
    key: randomBytes(SESSION_KEY_LENGTH),
    iv: randomBytes(SESSION_IV_LENGTH),
    salt: randomBytes(SESSION_SALT_LENGTH),
  });
  socket.write(reply);
  await reader.read(HELLO_LENGTH);
  socket.write(zeros.subarray(0, HELLO_LENGTH));
  await reader.read(CONNECT_BURST_LENGTH);
  return plaintext.deviceId;
}

/** The devices' side: connections that stay open until {@link ClaimFloorDevices.closeAll}. */
export class ClaimFloorDevices {
  readonly #open = new Set<Socket>();

  /**
   * `ids` connect at once, each as a device with `devicePrivateKeyPem` (its real RSA, the floor's bytes).
   * Each result's `connectedAt` is when its connect burst (with the claim code) was written.
   */
  storm(params: {
    port: number;
    serverPublicKeyPem: string;
    devicePrivateKeyPem: string;
    ids: readonly string[];
  }): Promise<DeviceConnectResult[]> {
    const serverPublicKey = createPublicKey(params.serverPublicKeyPem);
    const devicePrivateKey = createPrivateKey(params.devicePrivateKeyPem);
    const devicePublicKeyDer = new Uint8Array(
      createPublicKey(devicePrivateKey).export({ type: "spki", format: "der" }),
    );
    return Promise.all(
      params.ids.map((id) =>
        this.#connect({ port: params.port, id, serverPublicKey, devicePrivateKey, devicePublicKeyDer }),
      ),
    );
  }

  /** Closes every connection and waits until each has closed. */
  async closeAll(): Promise<void> {
    await Promise.all(
      [...this.#open]
        .filter((socket) => !socket.closed)
        .map((socket) => new Promise<void>((resolve) => socket.once("close", () => resolve()).end())),
    );
  }

  async #connect(options: {
    port: number;
    id: string;
    serverPublicKey: KeyObject;
    devicePrivateKey: KeyObject;
    devicePublicKeyDer: Uint8Array;
  }): Promise<DeviceConnectResult> {
    const startedAt = wallClock();
    const socket = connect({ host: "127.0.0.1", port: options.port, noDelay: true });
    this.#open.add(socket);
    socket.on("close", () => this.#open.delete(socket));
    socket.on("error", () => socket.destroy());
    const reader = new Reader(socket);
    try {
      const nonce = await reader.read(HANDSHAKE_NONCE_LENGTH);
      socket.write(
        createHandshakeCiphertext({
          nonce,
          deviceId: options.id,
          devicePublicKey: options.devicePublicKeyDer,
          serverPublicKey: options.serverPublicKey,
        }),
      );
      openHandshakeReply({
        reply: await reader.read(HANDSHAKE_REPLY_LENGTH),
        devicePrivateKey: options.devicePrivateKey,
        serverPublicKey: options.serverPublicKey,
      });
      socket.write(zeros.subarray(0, HELLO_LENGTH));
      await reader.read(HELLO_LENGTH);
      socket.write(zeros.subarray(0, CONNECT_BURST_LENGTH));
      const connectedAt = wallClock();
      await reader.read(ANSWERS_LENGTH);
      return { id: options.id, startedAt, connectedAt };
    } catch (error) {
      socket.destroy();
      return { id: options.id, startedAt, error: String(error) };
    }
  }
}
