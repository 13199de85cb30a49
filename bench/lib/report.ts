import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import type { MachineInfo } from "./machine.js";
import { round } from "./stats.js";

/** Whether a higher or a lower ratio is better, and the target it is read against. */
export interface Target {
  readonly better: "higher" | "lower";
  readonly ratio: number;
}

/** One line of the report: a measured figure side by side with its limit, and their ratio. */
export interface ReportRow {
  readonly scenario: string;
  readonly figure: string;
  /** The measured value, with its unit. */
  readonly value: string;
  /** What it is measured against (a limit measured in the same run, or a target), with its unit. */
  readonly limit: string;
  /** value / limit (or the scenario's own definition), when the figure has one. */
  readonly ratio?: number | undefined;
  /** The ratio the issue asks for; reported, never asserted. */
  readonly target?: Target | undefined;
}

/** What a scenario hands back: its rows for the table and its raw figures for the results file. */
export interface ScenarioResult {
  readonly name: string;
  readonly rows: readonly ReportRow[];
  readonly raw: Record<string, unknown>;
  /** Files the scenario wrote (charts). */
  readonly files?: readonly string[];
  /** The server's CPU profiles of the measured windows, when the run asked for them (`--profile`). */
  readonly profiles?: readonly (string | undefined)[];
}

/** "met", "missed" or "" for a row without a target. */
export function verdict(row: ReportRow): string {
  if (row.ratio === undefined || row.target === undefined || !Number.isFinite(row.ratio)) return "";
  const met = row.target.better === "higher" ? row.ratio >= row.target.ratio : row.ratio <= row.target.ratio;
  return met ? "met" : "MISSED";
}

function targetText(target: Target | undefined): string {
  if (!target) return "";
  return `${target.better === "higher" ? ">=" : "<="} ${target.ratio}`;
}

/** The report as a fixed-width text table. */
export function formatTable(rows: readonly ReportRow[]): string {
  const header = ["scenario", "figure", "value", "limit", "ratio", "target", ""];
  const lines = rows.map((row) => [
    row.scenario,
    row.figure,
    row.value,
    row.limit,
    row.ratio === undefined ? "" : String(round(row.ratio, 3)),
    targetText(row.target),
    verdict(row),
  ]);
  const widths = header.map((title, column) =>
    Math.max(title.length, ...lines.map((line) => (line[column] ?? "").length)),
  );
  const format = (cells: readonly string[]) =>
    cells
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join("  ")
      .trimEnd();
  const rule = widths.map((width) => "-".repeat(width)).join("  ");
  return [format(header), rule, ...lines.map(format)].join("\n");
}

/** Everything one run produced, as written to `bench/results/<date>.json`. */
export interface RunResults {
  readonly date: string;
  readonly mode: "full" | "quick";
  readonly durationMs: number;
  readonly machine: MachineInfo;
  /** Whether the servers ran their build (as shipped) or their TypeScript sources through tsx. */
  readonly serverPackages: "built" | "source";
  /** One-minute load average of the machine when the run started and ended: other work skews figures. */
  readonly loadAverage: { readonly start: number; readonly end: number };
  readonly rows: readonly (ReportRow & { verdict: string })[];
  readonly scenarios: Record<string, Record<string, unknown>>;
}

/** `2025-01-31T12-34-56Z`: an ISO date that is also a portable file name. */
export function fileStamp(date: Date): string {
  return date
    .toISOString()
    .replace(/\.\d+Z$/, "Z")
    .replaceAll(":", "-");
}

/** Writes the results file and returns its path. */
export function writeResults(options: { dir: string; stamp: string; results: RunResults }): string {
  mkdirSync(options.dir, { recursive: true });
  const suffix = options.results.mode === "quick" ? "-quick" : "";
  const path = join(options.dir, `${options.stamp}${suffix}.json`);
  writeFileSync(path, `${JSON.stringify(options.results, null, 2)}\n`);
  return path;
}
