import { spawn } from "node:child_process";
import type { ChildProcessWithoutNullStreams } from "node:child_process";
import { fileURLToPath } from "node:url";

/** The CLI entry, run from source. */
const ENTRY = fileURLToPath(new URL("../src/run.ts", import.meta.url));

/** A `roost …` child process with its output collected. */
export interface Roost {
  child: ChildProcessWithoutNullStreams;
  output(): string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  exited: Promise<number | null>;
}

/** Runs `roost …` from source in a child process (tsx, with the workspace source condition). */
export function roost(args: string[], env: NodeJS.ProcessEnv = {}): Roost {
  const child = spawn(process.execPath, ["--conditions=roost-source", "--import", "tsx", ENTRY, ...args], {
    env: { ...process.env, ROOST_DATABASE_URL: "", ...env },
  });
  let text = "";
  child.stdout.on("data", (chunk: Buffer) => (text += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (text += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
  return {
    child,
    output: () => text,
    exited,
    // Event-driven: checked on each chunk of output; the generous deadline only reports a hang.
    waitFor: (pattern, timeoutMs = 60_000) =>
      new Promise<RegExpExecArray>((resolve, reject) => {
        const check = () => {
          const match = pattern.exec(text);
          if (!match) return;
          done();
          resolve(match);
        };
        const fail = () => {
          done();
          reject(new Error(`no ${pattern} in:\n${text}`));
        };
        const timer = setTimeout(fail, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          child.stdout.off("data", check);
          child.stderr.off("data", check);
          child.off("close", onExit);
        };
        const onExit = () => {
          check();
          fail();
        };
        child.stdout.on("data", check);
        child.stderr.on("data", check);
        // "close" comes after the last output, unlike "exit".
        child.once("close", onExit);
        check();
        if (child.exitCode !== null && child.stdout.readableEnded && child.stderr.readableEnded) onExit();
      }),
  };
}

/**
 * The arguments of a test's `roost serve`: every port taken by the kernel (UDP 5684, the default, is never
 * taken: another test may hold it), its data in `data`, then `extra`.
 */
export function serveArgs(data: string, extra: readonly string[] = []): string[] {
  return ["serve", "--port", "0", "--device-port", "0", "--udp-port", "0", "--data", data, ...extra];
}

/** Starts `roost serve` with {@link serveArgs} and resolves with it and its URL once it says it listens. */
export async function startServe(
  data: string,
  extra: readonly string[] = [],
): Promise<{ server: Roost; url: string }> {
  const server = roost(serveArgs(data, extra));
  const url = (await server.waitFor(/listening on (http:\/\/\S+)/))[1] ?? "";
  return { server, url };
}
