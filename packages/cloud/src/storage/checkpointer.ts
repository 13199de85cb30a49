import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

/** How often the checkpoint thread copies the write-ahead log back into the database file. */
export const CHECKPOINT_INTERVAL_MS = 200;

/**
 * WAL pages after which the event loop's own connection still checkpoints (SQLite's automatic checkpoint):
 * a safety net when the checkpoint thread cannot keep up or is gone, far above what it lets the log reach.
 */
export const FALLBACK_AUTOCHECKPOINT_PAGES = 10_000;

/**
 * The checkpoint thread's code (CommonJS, run with `eval`: the same text whether Roost runs from its build or
 * from TypeScript). It opens its own connection to the file and runs a PASSIVE checkpoint on a timer; a
 * PASSIVE checkpoint never blocks the writer nor waits for readers, and copies what it can.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Sqlite = require(workerData.module);
const db = new Sqlite(workerData.file);
// The log is synced before each checkpoint and the database file after it, as the writer's NORMAL does.
db.pragma("synchronous = NORMAL");
const timer = setInterval(() => {
  try {
    db.pragma("wal_checkpoint(PASSIVE)");
  } catch (error) {
    parentPort.postMessage({ error: String(error && error.message) });
  }
}, workerData.intervalMs);
parentPort.on("message", () => {
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

/** A thread that checkpoints an SQLite database in WAL mode. */
export interface Checkpointer {
  close(): Promise<void>;
}

/**
 * Moves SQLite's checkpoints off the event loop. With the automatic checkpoint (every 1,000 WAL pages) the
 * commit that crosses the mark copies the log into the database file and waits for two fsyncs on the event
 * loop; under a stream of small commits (claim codes: bench api scenario) that was most of the wall time of
 * a commit. Here a worker thread with its own connection runs the checkpoints, which SQLite's documentation
 * suggests for this case (https://www.sqlite.org/wal.html#application_initiated_checkpoints). Durability is
 * unchanged: a commit is in the log when it returns, the log is synced before each checkpoint.
 * The caller lowers the main connection's `wal_autocheckpoint` to {@link FALLBACK_AUTOCHECKPOINT_PAGES}.
 */
export function startCheckpointer(options: {
  file: string;
  intervalMs?: number;
  /** Told when a checkpoint fails (the next one retries; the fallback still bounds the log). */
  onError?: (message: string) => void;
}): Checkpointer {
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    execArgv: [],
    workerData: {
      module: createRequire(import.meta.url).resolve("better-sqlite3"),
      file: options.file,
      intervalMs: options.intervalMs ?? CHECKPOINT_INTERVAL_MS,
    },
  });
  worker.unref();
  worker.on("message", (message: { error?: string }) => {
    if (message.error !== undefined) options.onError?.(message.error);
  });
  // A thread that dies leaves the fallback automatic checkpoint in charge.
  worker.on("error", (error) => options.onError?.(error.message));
  const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  return {
    async close() {
      // Held until it has exited: with nothing else keeping the process alive, the wait would not end.
      worker.ref();
      worker.postMessage("close");
      await exited;
    },
  };
}
