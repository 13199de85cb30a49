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
    waitFor: async (pattern, timeoutMs = 20_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = pattern.exec(text);
        if (match) return match;
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`no ${pattern} in:\n${text}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
  };
}
