// The storm's idle cores come from /proc/stat's `cpu` line: idle and I/O wait, in clock ticks.
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";

import {
  idleSecondsFromProcStat,
  idleSecondsPerCpu,
  machineIdleSeconds,
  sampleCoreDemand,
  threadState,
} from "../lib/idle-cpu.js";

const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill();
});

describe("idle CPU", () => {
  it("reads idle and I/O wait of the summed cpu line, not a single CPU's", () => {
    const text = [
      "cpu  44264 3769 10315 39185 686 0 536 429 0 0",
      "cpu0 18692 2216 4644 23533 128 0 190 214 0 0",
      "intr 842557 0 0",
    ].join("\n");
    expect(idleSecondsFromProcStat(text)).toBeCloseTo((39185 + 686) / 100, 6);
    expect(idleSecondsFromProcStat("cpu0 1 2 3 4 5\n")).toBeUndefined();
  });

  it("reads each CPU's idle and I/O wait by its number", () => {
    const text = [
      "cpu  44264 3769 10315 39185 686 0 536 429 0 0",
      "cpu1 25571 1553 5670 15651 557 0 345 215 0 0",
      "cpu0 18692 2216 4644 23533 128 0 190 214 0 0",
    ].join("\n");
    const idle = idleSecondsPerCpu(text);
    expect(idle).toHaveLength(2);
    expect(idle[0]).toBeCloseTo((23533 + 128) / 100, 6);
    expect(idle[1]).toBeCloseTo((15651 + 557) / 100, 6);
  });

  it.runIf(process.platform === "linux")("never goes backwards on this machine", () => {
    const first = machineIdleSeconds();
    const second = machineIdleSeconds();
    expect(first).toBeDefined();
    expect(second?.total).toBeGreaterThanOrEqual(first?.total ?? Number.POSITIVE_INFINITY);
    expect(first?.perCpu.length).toBeGreaterThan(0);
  });

  it("reads a thread's state after its command, even one with spaces and parentheses", () => {
    expect(threadState("17679 (cat) R 17677 17677 7320 0")).toBe("R");
    expect(threadState("42 (node (worker) 1) S 1 42 42 0")).toBe("S");
    expect(threadState("garbage")).toBeUndefined();
  });

  it.runIf(process.platform === "linux")(
    "counts a process that computes as one core asked for, one that waits as none, a group at most its cores",
    async () => {
      const start = (code: string) => {
        const child = spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "ignore"] });
        children.push(child);
        return new Promise<number>((resolve) => child.stdout.once("data", () => resolve(child.pid ?? 0)));
      };
      const spinner = await start("process.stdout.write('ready'); for (;;) {}");
      const sleeper = await start("process.stdout.write('ready'); setInterval(() => {}, 1e9)");
      const second = await start("process.stdout.write('ready'); for (;;) {}");
      const sample = (groups: Parameters<typeof sampleCoreDemand>[0]) =>
        new Promise<{ cores: number; samples: number } | undefined>((resolve) => {
          const sampler = sampleCoreDemand(groups, {
            intervalMs: 1,
            onSample: (samples) => {
              if (samples === 50) resolve(sampler.stop());
            },
          });
        });
      const spinning = await sample([{ pids: [spinner], cores: 2 }]);
      const waiting = await sample([{ pids: [sleeper], cores: 2 }]);
      // Two spinners pinned (as told) to one CPU ask for it alone; beside a waiting group, for one core.
      const capped = await sample([{ pids: [spinner, second], cores: 1 }]);
      const apart = await sample([
        { pids: [spinner], cores: 1 },
        { pids: [sleeper], cores: 1 },
      ]);
      expect(spinning?.samples).toBe(50);
      expect(spinning?.cores).toBeGreaterThanOrEqual(0.9);
      expect(waiting?.cores).toBeLessThanOrEqual(0.2);
      expect(capped?.cores).toBeLessThanOrEqual(1);
      expect(capped?.cores).toBeGreaterThanOrEqual(0.9);
      expect(apart?.cores).toBeGreaterThanOrEqual(0.9);
      expect(apart?.cores).toBeLessThanOrEqual(1.2);
    },
  );
});
