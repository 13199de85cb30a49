import { execFileSync } from "node:child_process";
import { availableParallelism, cpus, release, totalmem } from "node:os";

/** The machine a run was made on: figures only compare between runs on the same kind of machine. */
export interface MachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly node: string;
  readonly platform: string;
  readonly kernel: string;
  /** Open-file limit of the bench's processes (`ulimit -n`): caps the devices one process can hold. */
  readonly openFilesLimit: number;
}

/** The soft open-file limit, which child processes inherit. */
export function openFilesLimit(): number {
  try {
    const text = execFileSync("sh", ["-c", "ulimit -n"], { encoding: "utf8" }).trim();
    return text === "unlimited" ? Number.POSITIVE_INFINITY : Number(text);
  } catch {
    return Number.NaN;
  }
}

/** Describes this machine. */
export function machineInfo(): MachineInfo {
  const list = cpus();
  return {
    cpuModel: list[0]?.model.trim() ?? "unknown",
    cores: availableParallelism(),
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    kernel: release(),
    openFilesLimit: openFilesLimit(),
  };
}
