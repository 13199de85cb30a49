// The machine's idle CPU time (Linux, /proc/stat), so that a storm can tell cores no process used from cores
// that other processes of the machine (other benches, tests) took.
import { readFileSync } from "node:fs";

/** Clock ticks per second of /proc/stat's counters (USER_HZ: 100 on every Linux port Node runs on). */
const TICKS_PER_SECOND = 100;

/**
 * Idle CPU seconds so far, summed over every CPU (idle and waiting for I/O), from the `cpu` line of `text`
 * (the format of /proc/stat); undefined when there is none.
 * @see https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html (proc_stat(5))
 */
export function idleSecondsFromProcStat(text: string): number | undefined {
  const line = text.split("\n").find((candidate) => candidate.startsWith("cpu "));
  if (!line) return undefined;
  // cpu  user nice system idle iowait irq softirq steal …
  const fields = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = fields[3];
  const iowait = fields[4] ?? 0;
  if (idle === undefined || !Number.isFinite(idle)) return undefined;
  return (idle + iowait) / TICKS_PER_SECOND;
}

/** Idle CPU seconds so far of each CPU (`cpu0`, `cpu1`, … lines of `text`), by CPU number. */
export function idleSecondsPerCpu(text: string): number[] {
  const idle: number[] = [];
  for (const line of text.split("\n")) {
    const match = /^cpu(\d+)\s/.exec(line);
    if (!match) continue;
    const fields = line.trim().split(/\s+/).slice(1).map(Number);
    idle[Number(match[1])] = ((fields[3] ?? 0) + (fields[4] ?? 0)) / TICKS_PER_SECOND;
  }
  return idle;
}

/**
 * The machine's idle CPU seconds so far, in all and per CPU; undefined where /proc/stat cannot be read.
 */
export function machineIdleSeconds(): { total: number; perCpu: number[] } | undefined {
  try {
    const text = readFileSync("/proc/stat", "utf8");
    const total = idleSecondsFromProcStat(text);
    return total === undefined ? undefined : { total, perCpu: idleSecondsPerCpu(text) };
  } catch {
    return undefined;
  }
}
