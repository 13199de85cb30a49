import { readFileSync } from "node:fs";

/** The parts of a V8 `.cpuprofile` (what `node --cpu-prof` writes) that a summary needs. */
interface CpuProfile {
  readonly nodes: readonly {
    readonly id: number;
    readonly callFrame: {
      readonly functionName: string;
      readonly url: string;
      readonly lineNumber: number;
    };
  }[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Self time of one function or one area, as a share of the profile. */
export interface ProfileEntry {
  readonly name: string;
  readonly ms: number;
  readonly share: number;
}

/** The heaviest functions and areas (packages, Node internals, GC, idle) of one profile. */
export interface ProfileSummary {
  readonly file: string;
  readonly totalMs: number;
  readonly functions: readonly ProfileEntry[];
  readonly areas: readonly ProfileEntry[];
}

/** Which part of the system a frame belongs to, from its script URL. */
function areaOf(functionName: string, url: string): string {
  if (url === "") {
    if (functionName === "(idle)") return "idle";
    if (functionName === "(garbage collector)") return "garbage collector";
    if (functionName === "(program)") return "(program: native, not JS)";
    return "native code called from JS (crypto, sockets, sqlite)";
  }
  const module = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
  if (module) return module;
  const workspace = /\/packages\/([^/]+)\/(?:src|dist)\/(.*)$/.exec(url);
  if (workspace) return `@roost/${workspace[1]} ${workspace[2]?.split("/").slice(0, 2).join("/")}`;
  if (url.startsWith("node:")) return `node ${url.slice(5).split("/")[0]}`;
  return url.replace(/^file:\/\//, "");
}

function top(map: Map<string, number>, total: number, count: number): ProfileEntry[] {
  return [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([name, micros]) => ({ name, ms: micros / 1000, share: micros / total }));
}

/** Sums a profile's self time by function and by area. */
export function summarizeProfile(file: string, count = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const functions = new Map<string, number>();
  const areas = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, index) => {
    const micros = profile.timeDeltas[index] ?? 0;
    const frame = byId.get(id)?.callFrame;
    if (!frame) return;
    total += micros;
    const where = frame.url
      ? ` ${frame.url.replace(/^.*\/(node_modules|packages)\//, "")}:${frame.lineNumber + 1}`
      : "";
    const name = `${frame.functionName || "(anonymous)"}${where}`;
    functions.set(name, (functions.get(name) ?? 0) + micros);
    const area = areaOf(frame.functionName, frame.url);
    areas.set(area, (areas.get(area) ?? 0) + micros);
  });
  return {
    file,
    totalMs: total / 1000,
    functions: top(functions, total, count),
    areas: top(areas, total, count),
  };
}

/** A summary as text lines for the terminal. */
export function formatProfile(summary: ProfileSummary): string {
  const line = (entry: ProfileEntry) =>
    `  ${(100 * entry.share).toFixed(1).padStart(5)}%  ${entry.ms.toFixed(0).padStart(7)} ms  ${entry.name}`;
  return [
    `CPU profile ${summary.file} (${summary.totalMs.toFixed(0)} ms sampled)`,
    " self time by area:",
    ...summary.areas.map(line),
    " self time by function:",
    ...summary.functions.map(line),
  ].join("\n");
}
