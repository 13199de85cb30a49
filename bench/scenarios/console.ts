// Scenario 5, console: the web console's first load, in gzipped bytes of JavaScript, against the issue's
// budget of 200 KB. The console is built by Vite from source into a temporary folder; the first load is the
// JavaScript `index.html` references (entry and module preloads), lazily loaded pages excluded and reported
// on their own row.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { build } from "vite";

import type { ScenarioContext } from "../lib/context.js";
import type { ScenarioResult } from "../lib/report.js";
import { round } from "../lib/stats.js";

/** The budget for the first load, gzipped JavaScript. */
const FIRST_LOAD_BUDGET_BYTES = 200 * 1024;

const CONSOLE_ROOT = join(import.meta.dirname, "..", "..", "packages", "console");

export async function runConsole(context: ScenarioContext): Promise<ScenarioResult> {
  const outDir = mkdtempSync(join(tmpdir(), "roost-bench-console-"));
  try {
    await build({ root: CONSOLE_ROOT, logLevel: "silent", build: { outDir, emptyOutDir: true } });
    const html = readFileSync(join(outDir, "index.html"), "utf8");
    const firstLoad = new Set(
      [...html.matchAll(/(?:src|href)="\/console\/(assets\/[^"]+\.js)"/g)].map((match) => match[1] ?? ""),
    );
    const gzipped = (file: string) => gzipSync(readFileSync(join(outDir, file))).length;
    const assets = readdirSync(join(outDir, "assets"))
      .filter((name) => name.endsWith(".js"))
      .map((name) => `assets/${name}`);
    const first = assets.filter((file) => firstLoad.has(file)).reduce((sum, file) => sum + gzipped(file), 0);
    const lazy = assets.filter((file) => !firstLoad.has(file)).reduce((sum, file) => sum + gzipped(file), 0);
    context.log(`first load ${first} B gzipped (${[...firstLoad].join(", ")}); lazy chunks ${lazy} B`);
    return {
      name: "console",
      rows: [
        {
          scenario: "console",
          figure: "first-load JavaScript, gzipped",
          value: `${round(first / 1024, 1)} KB`,
          limit: `${FIRST_LOAD_BUDGET_BYTES / 1024} KB budget`,
          ratio: first / FIRST_LOAD_BUDGET_BYTES,
          target: { better: "lower", ratio: 1 },
        },
        {
          scenario: "console",
          figure: "lazily loaded pages (setup, webhooks), gzipped",
          value: `${round(lazy / 1024, 1)} KB`,
          limit: "",
        },
      ],
      raw: { firstLoadGzipBytes: first, lazyGzipBytes: lazy, firstLoadFiles: [...firstLoad] },
    };
  } finally {
    rmSync(outDir, { recursive: true, force: true });
  }
}
