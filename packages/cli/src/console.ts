import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/**
 * The folder of the built web console (`@roost/console`'s `dist`, made by the root build), or undefined when
 * it has not been built: the cloud then runs without it.
 */
export function findConsoleDir(): string | undefined {
  try {
    const manifest = createRequire(import.meta.url).resolve("@roost/console/package.json");
    const dist = join(dirname(manifest), "dist");
    return existsSync(join(dist, "index.html")) ? dist : undefined;
  } catch {
    return undefined;
  }
}
