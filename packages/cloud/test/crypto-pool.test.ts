// The gateway's handshake crypto in worker threads must do exactly what it does on the event loop: the device
// side of the real protocol code opens what the pool produces, and bad input fails one job, not the pool.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";

import type { RsaKeyPair } from "@roost/protocol/node";
import {
  createHandshakeCiphertext,
  exportPublicKeyDer,
  generateDeviceKeyPair,
  generateServerKeyPair,
  openHandshakeReply,
} from "@roost/protocol/node";

import type { HandshakeCrypto } from "../src/gateway/crypto-pool.js";
import {
  DEFAULT_CRYPTO_NICENESS,
  DeviceKeyRefused,
  inThreadCrypto,
  startCryptoPool,
} from "../src/gateway/crypto-pool.js";

const credentials = () => ({
  key: new Uint8Array(randomBytes(16)),
  iv: new Uint8Array(randomBytes(16)),
  salt: new Uint8Array(randomBytes(8)),
});

describe("handshake crypto: worker pool and event loop alike", () => {
  let server: RsaKeyPair;
  let device: RsaKeyPair;
  let pool: HandshakeCrypto;
  let inThread: HandshakeCrypto;

  beforeAll(async () => {
    [server, device] = await Promise.all([generateServerKeyPair(), generateDeviceKeyPair()]);
    pool = startCryptoPool({ serverPrivateKey: server.privateKey, size: 2 });
    inThread = inThreadCrypto(server.privateKey);
  });
  afterAll(() => pool?.close());

  function ciphertextFor(nonce: Uint8Array, deviceId: string): Uint8Array {
    return createHandshakeCiphertext({
      nonce,
      deviceId,
      devicePublicKey: exportPublicKeyDer(device.publicKey),
      serverPublicKey: server.publicKey,
    });
  }

  it("opens handshake ciphertexts and builds replies the device accepts, 40 at once over two workers", async () => {
    const jobs = Array.from({ length: 40 }, async () => {
      const nonce = new Uint8Array(randomBytes(40));
      const deviceId = randomBytes(12).toString("hex");
      const plaintext = await pool.openCiphertext(ciphertextFor(nonce, deviceId), nonce);
      expect(plaintext).toEqual(await inThread.openCiphertext(ciphertextFor(nonce, deviceId), nonce));
      expect(plaintext.deviceId).toBe(deviceId);
      const sent = credentials();
      const reply = await pool.reply(exportPublicKeyDer(device.publicKey), sent);
      const received = openHandshakeReply({
        reply,
        devicePrivateKey: device.privateKey,
        serverPublicKey: server.publicKey,
      });
      expect(received).toEqual(sent);
    });
    await Promise.all(jobs);
  });

  it("fails a job with a wrong nonce or garbage, and keeps serving", async () => {
    const nonce = new Uint8Array(randomBytes(40));
    const other = new Uint8Array(randomBytes(40));
    const ciphertext = ciphertextFor(nonce, randomBytes(12).toString("hex"));
    await expect(pool.openCiphertext(ciphertext, other)).rejects.toThrow(/nonce/i);
    await expect(pool.openCiphertext(new Uint8Array(256), nonce)).rejects.toThrow();
    await expect(pool.openCiphertext(new Uint8Array(7), nonce)).rejects.toThrow(/256/);
    expect((await pool.openCiphertext(ciphertext, nonce)).nonce).toEqual(nonce);
  });

  it("refuses a device key it cannot import as a key refusal, in the pool and on the event loop, and keeps serving", async () => {
    const der = exportPublicKeyDer(device.publicKey);
    const garbage = new Uint8Array(der.length);
    for (const crypto of [pool, inThread]) {
      await expect(crypto.reply(garbage, credentials())).rejects.toBeInstanceOf(DeviceKeyRefused);
      const sent = credentials();
      const reply = await crypto.reply(der, sent);
      expect(
        openHandshakeReply({ reply, devicePrivateKey: device.privateKey, serverPublicKey: server.publicKey }),
      ).toEqual(sent);
    }
  });

  it("sends the jobs of one event-loop turn to each worker in one message (16 at most)", async () => {
    const batching = startCryptoPool({ serverPrivateKey: server.privateKey, size: 2 });
    const posted = vi.spyOn(Worker.prototype, "postMessage");
    try {
      const jobs = Array.from({ length: 40 }, () => {
        const nonce = new Uint8Array(randomBytes(40));
        const deviceId = randomBytes(12).toString("hex");
        return batching.openCiphertext(ciphertextFor(nonce, deviceId), nonce).then((plaintext) => {
          expect(plaintext.deviceId).toBe(deviceId);
        });
      });
      await Promise.all(jobs);
      expect(posted.mock.calls.map(([jobs]) => (jobs as unknown[]).length).sort((a, b) => a - b)).toEqual([
        4, 4, 16, 16,
      ]);
    } finally {
      posted.mockRestore();
      await batching.close();
    }
  });

  it("answers a handshake's reply before opens that were waiting in the same worker", async () => {
    const single = startCryptoPool({ serverPrivateKey: server.privateKey, size: 1 });
    const order: string[] = [];
    try {
      // One turn's jobs reach the worker in one message: eight opens, then a reply.
      const opens = Array.from({ length: 8 }, (_, index) => {
        const nonce = new Uint8Array(randomBytes(40));
        const deviceId = randomBytes(12).toString("hex");
        return single.openCiphertext(ciphertextFor(nonce, deviceId), nonce).then((plaintext) => {
          expect(plaintext.deviceId).toBe(deviceId);
          order.push(`open ${index}`);
        });
      });
      const sent = credentials();
      const reply = single.reply(exportPublicKeyDer(device.publicKey), sent).then((bytes) => {
        expect(
          openHandshakeReply({
            reply: bytes,
            devicePrivateKey: device.privateKey,
            serverPublicKey: server.publicKey,
          }),
        ).toEqual(sent);
        order.push("reply");
      });
      await Promise.all([...opens, reply]);
      expect(order).toEqual(["reply", ...Array.from({ length: 8 }, (_, index) => `open ${index}`)]);
    } finally {
      await single.close();
    }
  });

  it("refuses work once closed", async () => {
    const closing = startCryptoPool({ serverPrivateKey: server.privateKey, size: 1 });
    await closing.close();
    await expect(closing.reply(exportPublicKeyDer(device.publicKey), credentials())).rejects.toThrow(
      /closed/,
    );
  });

  /** A thread's nice value as the kernel reports it: field 19 of /proc/<pid>/task/<tid>/stat. */
  function kernelNice(tid: number): number {
    const stat = readFileSync(`/proc/${process.pid}/task/${tid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]);
  }

  it.runIf(process.platform === "linux")(
    "runs its worker threads at the nice value asked for, and only them (Linux)",
    async () => {
      const ownNice = kernelNice(process.pid);
      for (const niceness of [undefined, 15, 0]) {
        const niced = startCryptoPool({ serverPrivateKey: server.privateKey, size: 2, niceness });
        try {
          // Each worker reports its thread before its first answer: two jobs at once reach both workers.
          await Promise.all([
            niced.reply(exportPublicKeyDer(device.publicKey), credentials()),
            niced.reply(exportPublicKeyDer(device.publicKey), credentials()),
          ]);
          const threads = niced.threads?.() ?? [];
          expect(threads).toHaveLength(2);
          const expected = niceness ?? DEFAULT_CRYPTO_NICENESS;
          for (const thread of threads) {
            expect(thread.tid).toBeGreaterThan(0);
            expect(thread.tid).not.toBe(process.pid);
            expect(kernelNice(thread.tid ?? 0)).toBe(expected === 0 ? ownNice : expected);
          }
          // The event loop's thread keeps its priority.
          expect(kernelNice(process.pid)).toBe(ownNice);
        } finally {
          await niced.close();
        }
      }
    },
  );

  it("refuses a nice value outside 0–19", () => {
    expect(() => startCryptoPool({ serverPrivateKey: server.privateKey, niceness: -1 })).toThrow(RangeError);
    expect(() => startCryptoPool({ serverPrivateKey: server.privateKey, niceness: 20 })).toThrow(RangeError);
  });
});
