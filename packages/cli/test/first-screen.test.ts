import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));

/** Runs a shell command line in the repository root, as a person would type it. */
function shell(line: string) {
  const child = spawn("bash", ["-c", line], {
    cwd: ROOT,
    env: { ...process.env, ROOST_DATABASE_URL: "", NO_COLOR: "1" },
    detached: true,
  });
  let text = "";
  child.stdout.on("data", (chunk: Buffer) => (text += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (text += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
  return { child, exited, output: () => text };
}

describe("the README's first screen: npm start, then the printed roost setup line", () => {
  const data = mkdtempSync(join(tmpdir(), "roost-first-screen-"));
  afterAll(() => rmSync(data, { recursive: true, force: true }));

  it(
    "starts the cloud with a virtual device ready to claim, and the printed line claims it",
    { timeout: 180_000 },
    async () => {
      // `npm start` with free ports instead of 8080/5683/5609, so the test can run beside anything.
      const start = shell(
        `npm start --silent -- --port 0 --device-port 0 --softap-port 0 --softap-http-port 0 --data ${data}`,
      );
      try {
        // Ready when the console link, the last line printed, is there: output is checked as it arrives.
        const line = await new Promise<string | undefined>((resolve) => {
          const check = () => {
            const found = /^\s+(npx roost setup .+)$/m.exec(start.output())?.[1];
            if (found && /sign-in-link\?\S+\n/.test(start.output())) resolve(found);
          };
          start.child.stdout.on("data", check);
          start.child.stderr.on("data", check);
          start.child.once("close", () => resolve(undefined));
          check();
        });
        expect(line, start.output()).toBeDefined();
        // The console link, signed in through a one-time token, is printed with the setup line.
        expect(start.output()).toMatch(
          /^\s+http:\/\/127\.0\.0\.1:\d+\/console\/#\/sign-in-link\?token=[^&\s]+&softap=http%3A%2F%2F127\.0\.0\.1%3A\d+$/m,
        );
        expect(start.output()).toMatch(
          /Virtual device [0-9a-f]{24} \(Photon-[2-9A-HJ-NP-Z]{6}\) is in listening mode/,
        );
        const setup = shell(line ?? "");
        expect(await setup.exited, setup.output()).toBe(0);
        expect(setup.output()).toMatch(/Device [0-9a-f]{24} is claimed and online/);
        expect(start.output()).toContain("claim confirmed; claim code cleared");
      } finally {
        if (start.child.pid) process.kill(-start.child.pid, "SIGTERM");
        await start.exited;
      }
    },
  );
});
