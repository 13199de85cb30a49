/**
 * A {@link NetworkSwitcher} for Linux with NetworkManager, through its `nmcli` command: remembers the active
 * Wi-Fi connection, joins the strongest `<prefix>-XXXXXX` access point (open, spec A.1), and on `restore()`
 * brings the previous connection back up and deletes the profile it created for the device.
 * @see spec/device-protocols.md A.1
 */
import { execFile } from "node:child_process";

import { SetupError } from "../errors.js";
import type { JoinedNetwork, NetworkSwitcher } from "../network.js";

/** Runs a program with arguments (no shell); resolves with its standard output, rejects on a non-zero exit. */
export type CommandRunner = (command: string, args: readonly string[]) => Promise<string>;

/** Options of {@link createNmcliNetwork}. */
export interface NmcliNetworkOptions {
  /** Runs `nmcli`; tests inject a fake. @default execFile without a shell */
  run?: CommandRunner;
  /** The Wi-Fi interface, e.g. `wlan0`. @default whichever NetworkManager picks */
  iface?: string;
  /** Ask for a fresh scan before choosing the device's network. @default true */
  rescan?: boolean;
}

/** NetworkManager's connection type of Wi-Fi profiles. */
const WIFI_CONNECTION_TYPE = "802-11-wireless";

/** What `nmcli device wifi connect` prints on success: `… successfully activated with '<uuid>'.` */
const ACTIVATED_UUID = /activated with '([0-9a-fA-F-]{36})'/;

/** `execFile` as a {@link CommandRunner}. */
export const execFileRunner: CommandRunner = (command, args) =>
  new Promise((resolve, reject) => {
    execFile(command, [...args], { encoding: "utf8" }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(" ")}: ${stderr.trim() || error.message}`));
      else resolve(stdout);
    });
  });

/**
 * Splits one line of `nmcli --terse` output into fields: `:` separates them, and a literal `:` or `\` in a
 * value is escaped with `\` (nmcli(1), "--escape").
 */
export function splitTerseLine(line: string): string[] {
  const fields: string[] = [];
  let current = "";
  for (let i = 0; i < line.length; i++) {
    const char = line[i];
    if (char === "\\" && i + 1 < line.length) {
      current += line[++i];
    } else if (char === ":") {
      fields.push(current);
      current = "";
    } else {
      current += char;
    }
  }
  fields.push(current);
  return fields;
}

function lines(output: string): string[][] {
  return output
    .split("\n")
    .filter((line) => line.length > 0)
    .map(splitTerseLine);
}

function failure(
  code: "NETWORK_SWITCH_FAILED" | "DEVICE_NOT_FOUND",
  summary: string,
  cause?: unknown,
): SetupError {
  return new SetupError({ code, summary, cause });
}

function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Creates the NetworkManager switcher. Runs only `nmcli`, never a shell; SSIDs are passed as arguments.
 * @see spec/device-protocols.md A.1 (open AP, SSID `<prefix>-<code>`)
 */
export function createNmcliNetwork({
  run = execFileRunner,
  iface,
  rescan = true,
}: NmcliNetworkOptions = {}): NetworkSwitcher {
  const ifaceArgs = iface === undefined ? [] : ["ifname", iface];
  let previous: { name: string; uuid: string } | undefined;
  let joined: { ssid: string; uuid: string | undefined } | undefined;

  async function activeWifi(): Promise<{ name: string; uuid: string } | undefined> {
    const output = await run("nmcli", [
      "--terse",
      "--fields",
      "NAME,UUID,TYPE,DEVICE",
      "connection",
      "show",
      "--active",
    ]);
    for (const [name = "", uuid = "", type = "", device = ""] of lines(output)) {
      if (type === WIFI_CONNECTION_TYPE && (iface === undefined || device === iface)) return { name, uuid };
    }
    return undefined;
  }

  async function strongest(ssidPrefix: string): Promise<string | undefined> {
    const output = await run("nmcli", [
      "--terse",
      "--fields",
      "SSID,SIGNAL",
      "device",
      "wifi",
      "list",
      ...ifaceArgs,
      "--rescan",
      rescan ? "yes" : "no",
    ]);
    let best: { ssid: string; signal: number } | undefined;
    for (const [ssid = "", signal = ""] of lines(output)) {
      const strength = Number.parseInt(signal, 10);
      if (!ssid.startsWith(`${ssidPrefix}-`) || ssid.length === ssidPrefix.length + 1) continue;
      if (!best || (Number.isFinite(strength) && strength > best.signal))
        best = { ssid, signal: Number.isFinite(strength) ? strength : -1 };
    }
    return best?.ssid;
  }

  return {
    async joinDeviceNetwork(ssidPrefix): Promise<JoinedNetwork> {
      try {
        const current = await activeWifi();
        // Rejoining (the wrong-password check) must not forget the user's own network.
        if (current && !current.name.startsWith(`${ssidPrefix}-`)) previous = current;
      } catch (error) {
        throw failure(
          "NETWORK_SWITCH_FAILED",
          `NetworkManager could not list the active connections: ${reason(error)}.`,
          error,
        );
      }
      let ssid: string | undefined;
      try {
        ssid = await strongest(ssidPrefix);
      } catch (error) {
        throw failure(
          "NETWORK_SWITCH_FAILED",
          `NetworkManager could not scan for Wi-Fi networks: ${reason(error)}.`,
          error,
        );
      }
      if (ssid === undefined)
        throw failure("DEVICE_NOT_FOUND", `No Wi-Fi network named "${ssidPrefix}-…" is visible.`);
      try {
        const output = await run("nmcli", ["device", "wifi", "connect", ssid, ...ifaceArgs]);
        joined = { ssid, uuid: ACTIVATED_UUID.exec(output)?.[1] };
      } catch (error) {
        throw failure(
          "NETWORK_SWITCH_FAILED",
          `NetworkManager could not join "${ssid}": ${reason(error)}.`,
          error,
        );
      }
      return { ssid };
    },

    async restore() {
      const device = joined;
      const back = previous;
      joined = undefined;
      previous = undefined;
      let problem: SetupError | undefined;
      if (back) {
        try {
          await run("nmcli", ["connection", "up", "uuid", back.uuid]);
        } catch (error) {
          problem = failure(
            "NETWORK_SWITCH_FAILED",
            `NetworkManager could not return to "${back.name}": ${reason(error)}.`,
            error,
          );
        }
      }
      // The profile `device wifi connect` made for the device's access point is of no use after setup.
      if (device?.uuid)
        await run("nmcli", ["connection", "delete", "uuid", device.uuid]).catch(() => undefined);
      if (problem) throw problem;
    },
  };
}
