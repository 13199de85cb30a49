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

// A message carries the jobs of one turn of the gateway's event loop; their results go back in one message.
parentPort?.on("message", (jobs: CryptoJob[]) => {
  const results: CryptoJobResult[] = [];
  for (const job of jobs) {
    try {
      results.push(run(job, serverPrivateKey));
    } catch (error) {
      results.push({
        id: job.id,
        ok: false,
        message: error instanceof Error ? error.message : String(error),
      });
    }
  }
  parentPort?.postMessage(results);
});
