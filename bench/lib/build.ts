import { execFile } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);

/**
 * Brings the cloud's build (`packages/cloud/dist`, and what it references) up to date with `tsc -b`, so that
 * the server under test runs the JavaScript that ships. Returns the compiler's complaint when it fails.
 */
export async function buildCloud(): Promise<{ ok: true } | { ok: false; error: string }> {
  const root = fileURLToPath(new URL("../..", import.meta.url));
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  try {
    await run(process.execPath, [tsc, "-b", "packages/cloud"], { cwd: root, maxBuffer: 16 * 2 ** 20 });
    return { ok: true };
  } catch (error) {
    const output = error as { stdout?: string; message?: string };
    return { ok: false, error: (output.stdout || output.message || String(error)).slice(0, 2000) };
  }
}
