import { EventEmitter } from "node:events";
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

/** What one `PRAGMA wal_checkpoint(PASSIVE)` did. @see https://www.sqlite.org/pragma.html#pragma_wal_checkpoint */
export interface CheckpointResult {
  /** 1 when another connection held a lock the checkpoint needed (it then copied what it could). */
  readonly busy: number;
  /** Frames in the write-ahead log. */
  readonly log: number;
  /** Frames of the log now copied into the database file. */
  readonly checkpointed: number;
}

/** How often the thread checkpoints: often enough that each copies a few hundred pages under a write load. */
export const CHECKPOINT_INTERVAL_MS = 200;

/** Events of a {@link WalCheckpointer}. */
interface CheckpointerEvents {
  checkpoint: [result: CheckpointResult];
  /** A checkpoint failed or the thread died; the serving connection's fallback limit still bounds the log. */
  failure: [error: Error];
}

/**
 * Pages the serving connection may let its log grow to before it checkpoints by itself: a safety net for when
 * the checkpointer thread cannot keep up or has died (64 MiB of 4 KiB pages), far above SQLite's default of
 * 1,000 pages that the thread keeps the log under.
 */
export const FALLBACK_AUTOCHECKPOINT_PAGES = 16_384;

/**
 * The checkpointer thread. A script rather than a module file, so that it runs the same from the build and from
 * TypeScript sources (Node 20 cannot load TypeScript in a worker); it loads better-sqlite3 from the path the
 * main thread resolved.
 */
const WORKER_SCRIPT = `
const { parentPort, workerData } = require("node:worker_threads");
const Sqlite = require(workerData.module);
const db = new Sqlite(workerData.file, { fileMustExist: true });
db.pragma("busy_timeout = 5000");
parentPort.on("message", (message) => {
  if (message === "close") {
    db.close();
    parentPort.close();
    return;
  }
  try {
    const [row] = db.pragma("wal_checkpoint(PASSIVE)");
    parentPort.postMessage({ ok: true, result: row });
  } catch (error) {
    parentPort.postMessage({ ok: false, message: error instanceof Error ? error.message : String(error) });
  }
});
`;

type WorkerReply = { ok: true; result: CheckpointResult } | { ok: false; message: string };

/**
 * Checkpoints an SQLite file's write-ahead log on a thread of its own.
 *
 * With SQLite's default, the connection that commits the 1,000th page of the log copies the log back into the
 * database file and syncs it, inside that commit: 20–90 ms on this project's machine, on the event loop that
 * serves every device and request (a stall seen as the tail of ping and claim latencies, bench/README.md). The
 * serving connection is therefore opened with a far larger limit ({@link FALLBACK_AUTOCHECKPOINT_PAGES}), and this
 * thread, with its own connection to the same file, runs a passive checkpoint every {@link CHECKPOINT_INTERVAL_MS}: it copies what no
 * reader still needs and never blocks the writer (https://www.sqlite.org/wal.html#checkpointing). The
 * durability of `synchronous = NORMAL` is unchanged: the log is synced whenever a checkpoint runs, wherever it runs.
 */
export class WalCheckpointer extends EventEmitter<CheckpointerEvents> {
  readonly #worker: Worker;
  readonly #timer: NodeJS.Timeout;
  readonly #waiting: ((reply: WorkerReply) => void)[] = [];
  #inFlight = false;
  #closed = false;
  #exited = false;

  constructor(file: string, options: { intervalMs?: number } = {}) {
    super();
    const module = createRequire(import.meta.url).resolve("better-sqlite3");
    this.#worker = new Worker(WORKER_SCRIPT, { eval: true, workerData: { file, module } });
    this.#worker.unref();
    this.#worker.on("message", (reply: WorkerReply) => {
      this.#inFlight = false;
      this.#waiting.shift()?.(reply);
      if (reply.ok) this.emit("checkpoint", reply.result);
      else this.emit("failure", new Error(`WAL checkpoint failed: ${reply.message}`));
    });
    this.#worker.on("error", (error) => this.emit("failure", error));
    this.#worker.on("exit", () => {
      this.#exited = true;
      clearInterval(this.#timer);
      for (const settle of this.#waiting.splice(0))
        settle({ ok: false, message: "checkpointer thread exited" });
    });
    this.#timer = setInterval(() => {
      // One at a time: a slow disk must not pile up requests.
      if (!this.#inFlight) void this.checkpoint().catch(() => undefined);
    }, options.intervalMs ?? CHECKPOINT_INTERVAL_MS);
    this.#timer.unref();
  }

  /** Runs a passive checkpoint now, on the checkpointer's thread. */
  checkpoint(): Promise<CheckpointResult> {
    if (this.#closed || this.#exited) return Promise.reject(new Error("checkpointer closed"));
    this.#inFlight = true;
    return new Promise((resolve, reject) => {
      this.#waiting.push((reply) => {
        if (reply.ok) resolve(reply.result);
        else reject(new Error(`WAL checkpoint failed: ${reply.message}`));
      });
      this.#worker.postMessage("checkpoint");
    });
  }

  /** Stops the timer and closes the thread's connection (the serving connection's close checkpoints the rest). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    if (this.#exited) return;
    const exited = new Promise<void>((resolve) => this.#worker.once("exit", () => resolve()));
    // Held open until its connection is closed: an unreferenced thread would let the process end first.
    this.#worker.ref();
    this.#worker.postMessage("close");
    await exited;
  }
}
