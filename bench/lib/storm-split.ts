// A handshake storm run from several device processes at once: each process gets its own share of the devices
// and of the handshakes in flight, so that no single device process (one thread) bounds the storm.
import type { DeviceConnectResult, FleetConnectParams } from "../processes/device-fleet.js";

/** One process's part of a storm. */
export interface StormShare<T> {
  readonly devices: T[];
  /** Handshakes in flight at once in this process. */
  readonly concurrency: number;
}

/**
 * Splits `devices` and `concurrency` handshakes in flight over `processes` device processes: contiguous runs of
 * devices whose sizes differ by at most one, and in-flight counts that differ by at most one and add up to
 * `concurrency` (each at least 1, so `processes` when `concurrency` is smaller). A process with no devices has
 * no handshakes in flight.
 */
export function splitStorm<T>(
  devices: readonly T[],
  processes: number,
  concurrency: number,
): StormShare<T>[] {
  if (!Number.isInteger(processes) || processes < 1)
    throw new RangeError("a storm needs a positive whole number of device processes");
  if (!Number.isInteger(concurrency) || concurrency < 1)
    throw new RangeError("a storm needs a positive whole number of handshakes in flight");
  const shares: StormShare<T>[] = [];
  let start = 0;
  for (let index = 0; index < processes; index++) {
    const count = Math.floor(devices.length / processes) + (index < devices.length % processes ? 1 : 0);
    const slice = devices.slice(start, start + count);
    start += count;
    const inFlight = Math.floor(concurrency / processes) + (index < concurrency % processes ? 1 : 0);
    shares.push({ devices: slice, concurrency: slice.length === 0 ? 0 : Math.max(1, inFlight) });
  }
  return shares;
}

/** A device process of the storm, as far as connecting goes. */
export interface StormConnector {
  connect(params: FleetConnectParams): Promise<DeviceConnectResult[]>;
}

/**
 * Connects `devices` from every process of `fleets` at once, each with its share ({@link splitStorm}) of the
 * devices and of `concurrency`; every device's result.
 */
export async function connectStorm(options: {
  readonly fleets: readonly StormConnector[];
  readonly target: { readonly port: number; readonly serverPublicKeyPem: string };
  readonly keys: readonly string[];
  readonly devices: readonly { id: string; key: number }[];
  readonly concurrency: number;
  readonly pingIntervalMs: number;
}): Promise<DeviceConnectResult[]> {
  const shares = splitStorm(options.devices, options.fleets.length, options.concurrency);
  const lists = await Promise.all(
    options.fleets.map((fleet, index) => {
      const share = shares[index];
      if (!share || share.devices.length === 0) return Promise.resolve([]);
      return fleet.connect({
        host: "127.0.0.1",
        port: options.target.port,
        serverPublicKeyPem: options.target.serverPublicKeyPem,
        keys: options.keys,
        devices: share.devices,
        concurrency: share.concurrency,
        pingIntervalMs: options.pingIntervalMs,
      });
    }),
  );
  return lists.flat();
}
