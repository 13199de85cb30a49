// One thread of the gateway's crypto pool (see crypto-pool.ts): runs the asymmetric half of device handshakes
// with the server key it was started with, one job at a time, at a lower scheduling priority than the
// thread that serves connected devices.
import type { KeyObject } from "node:crypto";
import { readlinkSync } from "node:fs";
import { getPriority, setPriority } from "node:os";
import { parentPort, workerData } from "node:worker_threads";

import { createHandshakeReply, openHandshakeCiphertext } from "@roost/protocol/node";

import type { CryptoJob, CryptoJobResult, CryptoWorkerData, CryptoWorkerStarted } from "./crypto-jobs.js";
import { importDevicePublicKey } from "./device-key.js";

const { serverPrivateKey, niceness } = workerData as CryptoWorkerData;

// On Linux a thread's nice value is its own: lower this thread only (its kernel id from /proc/thread-self,
// `<pid>/task/<tid>`), so that the event loop serving connected devices keeps its priority and handshakes
// take the CPU it leaves. Elsewhere (no /proc) the pool runs without the priority.
function lowerPriority(): CryptoWorkerStarted {
  let tid: number | undefined;
  try {
    tid = Number(readlinkSync("/proc/thread-self").split("/").pop());
    if (!Number.isInteger(tid) || tid <= 0) tid = undefined;
  } catch {
    tid = undefined;
  }
  if (tid === undefined || niceness === 0) return { kind: "started", tid, niceness: undefined };
  try {
    setPriority(tid, niceness);
    return { kind: "started", tid, niceness: getPriority(tid) };
  } catch {
    // Not allowed here (a negative value without the capability): the pool still works, at its priority.
    return { kind: "started", tid, niceness: undefined };
  }
}

parentPort?.postMessage(lowerPriority());

function run(job: CryptoJob, key: KeyObject): CryptoJobResult {
  switch (job.kind) {
    case "open-handshake":
      return {
        id: job.id,
        ok: true,
        plaintext: openHandshakeCiphertext({
          ciphertext: job.ciphertext,
          serverPrivateKey: key,
          nonce: job.nonce,
        }),
      };
    case "handshake-reply": {
      let devicePublicKey: KeyObject;
      try {
        devicePublicKey = importDevicePublicKey(job.devicePublicKeyDer);
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        return { id: job.id, ok: false, message: `device public key: ${reason}`, keyRefused: true };
      }
      return {
        id: job.id,
        ok: true,
        reply: createHandshakeReply({
          devicePublicKey,
          serverPrivateKey: key,
          credentials: job.credentials,
        }),
      };
    }
  }
}

function runSafely(job: CryptoJob): CryptoJobResult {
  try {
    return run(job, serverPrivateKey);
  } catch (error) {
    return { id: job.id, ok: false, message: error instanceof Error ? error.message : String(error) };
  }
}

// Jobs wait here, replies before opens: a reply finishes a handshake whose ciphertext is already open. With
// the jobs answered in arrival order, a storm's first reply waited behind every open of the storm, and its
// devices all completed together at its end. One job per turn of this thread's loop, so that a reply posted
// while opens wait is read before the next open starts; each result goes back at once.
const replies: CryptoJob[] = [];
const opens: CryptoJob[] = [];
let scheduled = false;

function step(): void {
  scheduled = false;
  const job = replies.shift() ?? opens.shift();
  if (!job) return;
  parentPort?.postMessage([runSafely(job)]);
  schedule();
}

function schedule(): void {
  if (scheduled || (replies.length === 0 && opens.length === 0)) return;
  scheduled = true;
  setImmediate(step);
}

// A message carries the jobs of one turn of the gateway's event loop.
parentPort?.on("message", (jobs: CryptoJob[]) => {
  for (const job of jobs) (job.kind === "handshake-reply" ? replies : opens).push(job);
  schedule();
});
