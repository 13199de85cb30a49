import type { DeviceConnectResult } from "../processes/device-fleet.js";
import { wallClock } from "./child.js";

/**
 * Connects `devices`, `concurrency` at a time, in order. For each, `prepare` does the device's set-up (not
 * timed; an error there ends the whole call) and returns its connection step, timed from its start to its
 * end: what each device's result reports, or the step's error.
 */
export async function connectEach<T extends { readonly id: string }>(
  devices: readonly T[],
  concurrency: number,
  prepare: (device: T, index: number) => () => Promise<void>,
): Promise<DeviceConnectResult[]> {
  const results: DeviceConnectResult[] = [];
  let next = 0;
  const worker = async () => {
    while (next < devices.length) {
      const index = next++;
      const device = devices[index];
      if (!device) break;
      const connect = prepare(device, index);
      const startedAt = wallClock();
      try {
        await connect();
        results.push({ id: device.id, startedAt, connectedAt: wallClock() });
      } catch (error) {
        results.push({
          id: device.id,
          startedAt,
          error: error instanceof Error ? error.message : String(error),
        });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
  return results;
}
