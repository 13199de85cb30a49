// The machine's idle CPU time (Linux, /proc/stat), so that a storm can tell cores no process used from cores
// that other processes of the machine (other benches, tests) took.
import { readdirSync, readFileSync } from "node:fs";

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

/**
 * The scheduling state of a thread from its /proc stat line (`pid (comm) S …`): the field after the command,
 * whose name may itself hold spaces and parentheses.
 */
export function threadState(statLine: string): string | undefined {
  const end = statLine.lastIndexOf(")");
  if (end < 0) return undefined;
  return statLine.slice(end + 2, end + 3) || undefined;
}

/** Threads of `pids` that are running or waiting for a CPU (state R) right now, from /proc. */
function runnableThreads(pids: readonly number[]): number {
  let runnable = 0;
  for (const pid of pids) {
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) {
      try {
        if (threadState(readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8")) === "R") runnable += 1;
      } catch {
        // The thread ended between the listing and the read.
      }
    }
  }
  return runnable;
}

/**
 * Samples, every `intervalMs` (5 ms), how many threads of each group's processes are runnable, and on stop
 * reports the cores they asked for on average (a group counts at most its `cores`, the CPUs it is pinned to):
 * the cores these processes would have kept busy on a machine of their own. Other processes cannot fill it in,
 * unlike the machine's idle time; but a thread waiting for a CPU that others hold counts as runnable, so on a
 * busy machine it is an upper bound: below the cores allowed, the processes themselves left cores without
 * work; at them, no verdict. Undefined off Linux.
 */
export function sampleCoreDemand(
  groups: readonly { readonly pids: readonly number[]; readonly cores: number }[],
  options: { intervalMs?: number; onSample?: (samples: number) => void } = {},
): { stop(): { cores: number; samples: number } | undefined } {
  if (process.platform !== "linux") return { stop: () => undefined };
  let total = 0;
  let samples = 0;
  const timer = setInterval(() => {
    for (const group of groups) total += Math.min(group.cores, runnableThreads(group.pids));
    samples += 1;
    options.onSample?.(samples);
  }, options.intervalMs ?? 5);
  return {
    stop() {
      clearInterval(timer);
      return samples === 0 ? undefined : { cores: total / samples, samples };
    },
  };
}
