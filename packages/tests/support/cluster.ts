import { spawn } from "node:child_process";
import type { ChildProcessWithoutNullStreams } from "node:child_process";
import type { KeyObject } from "node:crypto";
import { createPublicKey } from "node:crypto";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";

/** The CLI entry, run from source. */
const ROOST_ENTRY = fileURLToPath(new URL("../../cli/src/run.ts", import.meta.url));

/** A `roost serve` node running as its own process, as an operator runs it. */
export interface ServeProcess {
  readonly child: ChildProcessWithoutNullStreams;
  readonly url: string;
  readonly devicePort: number;
  readonly nodeId: string;
  readonly serverPublicKey: KeyObject;
  /** Everything the process printed so far (pino JSON lines among them). */
  output(): string;
  /** Resolves once the output matches; rejects after `timeoutMs` or if the process exits. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** Kills the process (SIGKILL unless told otherwise) and waits for it to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `roost serve --port 0 --device-port 0 --udp-port 0 …args` from source and waits until it listens. */
export async function startServeProcess(args: readonly string[]): Promise<ServeProcess> {
  const child = spawn(
    process.execPath,
    [
      "--conditions=roost-source",
      "--import",
      "tsx",
      ROOST_ENTRY,
      "serve",
      "--port",
      "0",
      "--device-port",
      "0",
      // UDP 5684 is the default: tests never take the fixed port.
      "--udp-port",
      "0",
      ...args,
    ],
    { env: { ...process.env, ROOST_DATABASE_URL: "" } },
  );
  let text = "";
  child.stdout.on("data", (chunk: Buffer) => (text += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (text += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const waitFor = async (pattern: RegExp, timeoutMs = 60_000): Promise<RegExpExecArray> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = pattern.exec(text);
      if (match) return match;
      if (Date.now() > deadline || child.exitCode !== null || child.signalCode !== null)
        throw new Error(`no ${String(pattern)} in:\n${text.slice(-4000)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  const url = (await waitFor(/listening on (http:\/\/\S+)/))[1] ?? "";
  const devicePort = Number((await waitFor(/Device gateway listening on tcp:\/\/\S+:(\d+)/))[1]);
  const nodeId = (await waitFor(/Node ([0-9a-f-]{36})/))[1] ?? "";
  const key = (await (await fetch(`${url}/v1/roost/server-key`)).json()) as { public_key_pem: string };
  return {
    child,
    url,
    devicePort,
    nodeId,
    serverPublicKey: createPublicKey(key.public_key_pem),
    output: () => text,
    waitFor,
    async kill(signal: NodeJS.Signals = "SIGKILL") {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await exited;
    },
  };
}

/** A TCP port free right now on 127.0.0.1 (for servers that cannot be told to pick one, e.g. nats-server). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
