import { spawn } from "node:child_process";
import type { ChildProcessWithoutNullStreams } from "node:child_process";

import { freePort } from "./cluster.js";

/** The machine's NATS server binary (Debian's package). */
const NATS_SERVER = process.env.ROOST_TEST_NATS_SERVER ?? "/usr/sbin/nats-server";

/** A NATS server of the test's own, on a free port, that the test may stop and start again. */
export interface OwnNatsServer {
  readonly url: string;
  /** Starts it (again, on the same port); resolves once it says it is ready. */
  start(): Promise<void>;
  /** Kills it and waits for it to exit. */
  stop(): Promise<void>;
}

/** Creates (and starts) a NATS server on a free port of 127.0.0.1. */
export async function startOwnNatsServer(): Promise<OwnNatsServer> {
  const port = await freePort();
  let child: ChildProcessWithoutNullStreams | undefined;
  const server: OwnNatsServer = {
    url: `nats://127.0.0.1:${port}`,
    async start() {
      const started = spawn(NATS_SERVER, ["-a", "127.0.0.1", "-p", String(port)]);
      child = started;
      let text = "";
      await new Promise<void>((resolve, reject) => {
        const onData = (chunk: Buffer) => {
          text += chunk.toString();
          if (text.includes("Server is ready")) resolve();
        };
        started.stdout.on("data", onData);
        started.stderr.on("data", onData);
        started.once("exit", (code) => reject(new Error(`nats-server exited (${code}):\n${text}`)));
      });
    },
    async stop() {
      const running = child;
      child = undefined;
      if (!running || running.exitCode !== null) return;
      const exited = new Promise<void>((resolve) => running.once("exit", () => resolve()));
      running.kill("SIGKILL");
      await exited;
    },
  };
  await server.start();
  return server;
}
