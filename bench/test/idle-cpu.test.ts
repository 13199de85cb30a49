// The storm's idle cores come from /proc/stat's `cpu` line: idle and I/O wait, in clock ticks.
import { describe, expect, it } from "vitest";

import { idleSecondsFromProcStat, idleSecondsPerCpu, machineIdleSeconds } from "../lib/idle-cpu.js";

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
});
