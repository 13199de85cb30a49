import type { KeyObject } from "node:crypto";
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";

import type { HandshakePlaintext, SessionCredentials } from "@roost/protocol";
import { createHandshakeReply, openHandshakeCiphertext } from "@roost/protocol/node";

import type { CryptoJob, CryptoJobResult, CryptoWorkerData, CryptoWorkerStarted } from "./crypto-jobs.js";
import { importDevicePublicKey } from "./device-key.js";
import { HandshakeQueue } from "./handshake-queue.js";

/** The device's public key could not be imported: the handshake ends as a key mismatch, not a server fault. */
export class DeviceKeyRefused extends Error {}

/**
 * The asymmetric work of a device handshake (RSA today; ECDSA/ECDH for Gen 3 next), wherever it runs.
 * @see spec/device-protocols.md B.2 steps 3–4
 */
export interface HandshakeCrypto {
  /** Decrypts the handshake ciphertext with the server key and checks the nonce (step 3). */
  openCiphertext(ciphertext: Uint8Array, nonce: Uint8Array): Promise<HandshakePlaintext>;
  /**
   * Imports the device's public key (SPKI DER, as offered and registered), encrypts the session credentials to
   * it and signs them with the server key (step 4). Every handshake imports its device's key afresh: no parsed
   * key is kept (bench/README.md, handshake). Rejects with {@link DeviceKeyRefused} when the key cannot be read.
   */
  reply(devicePublicKeyDer: Uint8Array, credentials: SessionCredentials): Promise<Uint8Array>;
  /** Worker threads doing the work; 0 when it runs on the event loop. */
  readonly workers: number;
  /**
   * The worker threads that have started: kernel thread id (Linux) and the nice value each took (undefined
   * when none was set). For tests and the bench.
   */
  threads?(): readonly { readonly tid: number | undefined; readonly niceness: number | undefined }[];
  close(): Promise<void>;
}

/** Most jobs in one message to a worker: a turn's jobs beyond it leave in further messages. */
const MAX_JOBS_PER_MESSAGE = 16;

/**
 * Default nice value of the worker threads (Linux; the event loop stays at the process's): when the cores are
 * busy, the kernel gives the event loop serving connected devices ~10× a worker's share of a contended core
 * (weights 1024 against 110), so a reconnect storm's RSA does not delay connected devices' traffic.
 */
export const DEFAULT_CRYPTO_NICENESS = 10;

/**
 * The work on the event loop itself, one job per turn so that connected devices' traffic is read between
 * two jobs ({@link HandshakeQueue}): what `--crypto-workers 0` runs, and the reference for the pool.
 */
export function inThreadCrypto(serverPrivateKey: KeyObject): HandshakeCrypto {
  const queue = new HandshakeQueue();
  return {
    workers: 0,
    openCiphertext: (ciphertext, nonce) =>
      queue.run(() => openHandshakeCiphertext({ ciphertext, serverPrivateKey, nonce }), "start"),
    reply: (devicePublicKeyDer, credentials) =>
      queue.run(() => {
        let devicePublicKey: KeyObject;
        try {
          devicePublicKey = importDevicePublicKey(devicePublicKeyDer);
        } catch (error) {
          throw new DeviceKeyRefused(
            `device public key: ${error instanceof Error ? error.message : String(error)}`,
          );
        }
        return createHandshakeReply({ devicePublicKey, serverPrivateKey, credentials });
      }, "reply"),
    close: () => Promise.resolve(),
  };
}

/**
 * The worker's module: its build next to this file. When this file runs from TypeScript sources (Vitest, the
 * bench's `--source`), the worker still runs the build (`npm test` builds first): Node 20 cannot load
 * TypeScript in a worker thread, and the worker is a few lines over the protocol package's own build.
 */
function workerEntry(): URL {
  return import.meta.url.endsWith(".ts")
    ? new URL("../../dist/gateway/crypto-worker.js", import.meta.url)
    : new URL("./crypto-worker.js", import.meta.url);
}

interface PooledWorker {
  worker: Worker;
  inFlight: number;
  /** Jobs of this turn of the event loop, not yet posted: they leave in one message. */
  outbox: CryptoJob[];
  started?: { tid: number | undefined; niceness: number | undefined };
}

interface PendingJob {
  resolve(result: CryptoJobResult): void;
  reject(error: Error): void;
  owner: PooledWorker;
}

/**
 * Worker threads (one per core by default) that do the handshakes' asymmetric work, so that the event loop
 * serving connected devices never waits behind a handshake and every core is used. Each job goes to the
 * worker with the fewest jobs in flight; the workers run at a lower priority than the event loop (Linux), so
 * that in a reconnect storm connected devices' claims, events and pings still come first. A worker that dies
 * fails its jobs (those handshakes end) and is replaced. Threads start with the first job.
 *
 * The jobs submitted during one turn of the event loop go to each worker in one message: in a storm each
 * message costs both threads a system call and a wake-up, more than the structured clone of a job
 * (bench/README.md, handshake). A worker runs replies before opens (crypto-worker.ts) and answers each job
 * as it finishes.
 */
export function startCryptoPool(options: {
  serverPrivateKey: KeyObject;
  size?: number | undefined;
  /**
   * Nice value of each worker thread, 0–19 (Linux only; the event loop keeps its own): higher yields more of
   * a busy core to the event loop. 0 leaves the threads as the event loop. @default DEFAULT_CRYPTO_NICENESS
   */
  niceness?: number | undefined;
}): HandshakeCrypto {
  const size = options.size ?? availableParallelism();
  if (!Number.isInteger(size) || size < 1)
    throw new RangeError("crypto pool size must be a positive integer");
  const niceness = options.niceness ?? DEFAULT_CRYPTO_NICENESS;
  if (!Number.isInteger(niceness) || niceness < 0 || niceness > 19)
    throw new RangeError("crypto pool niceness must be an integer from 0 to 19");
  const entry = workerEntry();
  const data: CryptoWorkerData = { serverPrivateKey: options.serverPrivateKey, niceness };
  const pending = new Map<number, PendingJob>();
  const pool: PooledWorker[] = [];
  let nextId = 1;
  let closed = false;

  function spawn(): PooledWorker {
    const pooled: PooledWorker = {
      // No inherited flags: a source-mode parent's export conditions would point the build at TypeScript.
      worker: new Worker(entry, { workerData: data, execArgv: [] }),
      inFlight: 0,
      outbox: [],
    };
    pooled.worker.unref();
    pooled.worker.on("message", (message: CryptoJobResult[] | CryptoWorkerStarted) => {
      if (!Array.isArray(message)) {
        pooled.started = { tid: message.tid, niceness: message.niceness };
        return;
      }
      for (const result of message) {
        const job = pending.get(result.id);
        if (!job) continue;
        pending.delete(result.id);
        pooled.inFlight -= 1;
        job.resolve(result);
      }
    });
    const fail = (error: Error) => {
      pooled.outbox = [];
      for (const [id, job] of pending)
        if (job.owner === pooled) {
          pending.delete(id);
          job.reject(error);
        }
      const index = pool.indexOf(pooled);
      if (index >= 0) pool.splice(index, 1);
      if (!closed) pool.push(spawn());
    };
    pooled.worker.on("error", fail);
    pooled.worker.on("exit", (code) => {
      if (pool.includes(pooled)) fail(new Error(`crypto worker exited with code ${code}`));
    });
    return pooled;
  }

  let flushing = false;
  /** Posts each worker's jobs of this turn as one message. */
  function flush(): void {
    flushing = false;
    for (const pooled of pool) {
      if (pooled.outbox.length === 0) continue;
      const jobs = pooled.outbox;
      pooled.outbox = [];
      for (let start = 0; start < jobs.length; start += MAX_JOBS_PER_MESSAGE)
        pooled.worker.postMessage(jobs.slice(start, start + MAX_JOBS_PER_MESSAGE));
    }
  }

  function submit(job: CryptoJob): Promise<CryptoJobResult> {
    if (closed) return Promise.reject(new Error("crypto pool closed"));
    // Threads start with the first handshake: a node that serves only the API never pays for them.
    while (pool.length < size) pool.push(spawn());
    let owner = pool[0];
    for (const candidate of pool)
      if (owner === undefined || candidate.inFlight < owner.inFlight) owner = candidate;
    if (!owner) return Promise.reject(new Error("crypto pool has no worker"));
    const chosen = owner;
    return new Promise<CryptoJobResult>((resolve, reject) => {
      pending.set(job.id, { resolve, reject, owner: chosen });
      chosen.inFlight += 1;
      chosen.outbox.push(job);
      if (!flushing) {
        flushing = true;
        // After the poll phase: every socket read of this turn has submitted its job by then.
        setImmediate(flush);
      }
    });
  }

  function unwrap(result: CryptoJobResult): CryptoJobResult & { ok: true } {
    if (!result.ok)
      throw result.keyRefused ? new DeviceKeyRefused(result.message) : new Error(result.message);
    return result;
  }

  return {
    workers: size,
    threads: () => pool.flatMap((pooled) => (pooled.started ? [{ ...pooled.started }] : [])),
    async openCiphertext(ciphertext, nonce) {
      const result = unwrap(await submit({ id: nextId++, kind: "open-handshake", ciphertext, nonce }));
      if (!("plaintext" in result)) throw new Error("crypto worker answered the wrong job");
      return result.plaintext;
    },
    async reply(devicePublicKeyDer, credentials) {
      const result = unwrap(
        await submit({ id: nextId++, kind: "handshake-reply", devicePublicKeyDer, credentials }),
      );
      if (!("reply" in result)) throw new Error("crypto worker answered the wrong job");
      return result.reply;
    },
    async close() {
      closed = true;
      const closing = pool.splice(0);
      for (const pooled of closing) pooled.outbox = [];
      const workers = closing.map((pooled) => pooled.worker);
      for (const job of pending.values()) job.reject(new Error("crypto pool closed"));
      pending.clear();
      await Promise.all(workers.map((worker) => worker.terminate()));
    },
  };
}
