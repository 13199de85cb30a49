import { describe, expect, it } from "vitest";

import { isSetupError } from "../src/index.js";
import { createNmcliNetwork, splitTerseLine } from "../src/node.js";
import type { CommandRunner } from "../src/node.js";

const UUID_HOME = "11111111-2222-3333-4444-555555555555";
const UUID_PHOTON = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

/** A scripted nmcli: answers by the joined arguments, records every call. */
function fakeNmcli(answers: Record<string, string | Error>): CommandRunner & { calls: string[] } {
  const calls: string[] = [];
  const run = (command: string, args: readonly string[]) => {
    const line = [command, ...args].join(" ");
    calls.push(line);
    const answer = Object.entries(answers).find(([prefix]) => line.startsWith(prefix))?.[1] ?? "";
    return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer);
  };
  return Object.assign(run, { calls });
}

const ACTIVE = "nmcli --terse --fields NAME,UUID,TYPE,DEVICE connection show --active";
const LIST = "nmcli --terse --fields SSID,SIGNAL device wifi list";
const CONNECT = "nmcli device wifi connect";

describe("splitTerseLine (nmcli --terse escaping)", () => {
  it.each([
    ["a:b:c", ["a", "b", "c"]],
    ["My\\:Net:70", ["My:Net", "70"]],
    ["back\\\\slash:1", ["back\\slash", "1"]],
    [":", ["", ""]],
  ])("%s", (line, fields) => expect(splitTerseLine(line)).toEqual(fields));
});

describe("createNmcliNetwork", () => {
  it("joins the strongest Photon network, then returns to the previous connection and deletes the device's profile", async () => {
    const run = fakeNmcli({
      [ACTIVE]: `docker0:9999:bridge:docker0\nHome\\: 5G:${UUID_HOME}:802-11-wireless:wlan0\n`,
      [LIST]: "Home\\: 5G:80\nPhoton-AAAAAA:40\nPhoton-BBBBBB:65\nPhotonic:99\nPhoton-:99\n",
      [CONNECT]: `Device 'wlan0' successfully activated with '${UUID_PHOTON}'.\n`,
    });
    const network = createNmcliNetwork({ run });
    expect(await network.joinDeviceNetwork("Photon")).toEqual({ ssid: "Photon-BBBBBB" });
    await network.restore();
    expect(run.calls).toEqual([
      ACTIVE,
      `${LIST} --rescan yes`,
      `${CONNECT} Photon-BBBBBB`,
      `nmcli connection up uuid ${UUID_HOME}`,
      `nmcli connection delete uuid ${UUID_PHOTON}`,
    ]);
  });

  it("passes the interface on and can skip the rescan", async () => {
    const run = fakeNmcli({ [LIST]: "Photon-AAAAAA:40\n" });
    const network = createNmcliNetwork({ run, iface: "wlan1", rescan: false });
    await network.joinDeviceNetwork("Photon");
    expect(run.calls.slice(1)).toEqual([
      `${LIST} ifname wlan1 --rescan no`,
      `${CONNECT} Photon-AAAAAA ifname wlan1`,
    ]);
  });

  it("reports DEVICE_NOT_FOUND when no device network is visible, NETWORK_SWITCH_FAILED when joining fails", async () => {
    const none = createNmcliNetwork({ run: fakeNmcli({ [LIST]: "Home:80\n" }) });
    expect(
      isSetupError(await none.joinDeviceNetwork("Photon").catch((e: unknown) => e), "DEVICE_NOT_FOUND"),
    ).toBe(true);
    const refused = createNmcliNetwork({
      run: fakeNmcli({ [LIST]: "Photon-AAAAAA:40\n", [CONNECT]: new Error("Secrets were required") }),
    });
    const error = await refused.joinDeviceNetwork("Photon").catch((e: unknown) => e);
    expect(isSetupError(error, "NETWORK_SWITCH_FAILED")).toBe(true);
    expect((error as Error).message).toMatch(/could not join "Photon-AAAAAA": Secrets were required/);
  });

  it("without a previous Wi-Fi connection, restore only removes the device's profile; a failed return is NETWORK_SWITCH_FAILED", async () => {
    const alone = fakeNmcli({ [LIST]: "Photon-AAAAAA:40\n", [CONNECT]: `activated with '${UUID_PHOTON}'.` });
    const network = createNmcliNetwork({ run: alone });
    await network.joinDeviceNetwork("Photon");
    await network.restore();
    expect(alone.calls.at(-1)).toBe(`nmcli connection delete uuid ${UUID_PHOTON}`);
    expect(alone.calls.some((call) => call.includes("connection up"))).toBe(false);

    const stuck = createNmcliNetwork({
      run: fakeNmcli({
        [ACTIVE]: `Home:${UUID_HOME}:802-11-wireless:wlan0\n`,
        [LIST]: "Photon-AAAAAA:40\n",
        "nmcli connection up": new Error("no network"),
      }),
    });
    await stuck.joinDeviceNetwork("Photon");
    const error = await stuck.restore().catch((e: unknown) => e);
    expect(isSetupError(error, "NETWORK_SWITCH_FAILED")).toBe(true);
    expect((error as Error).message).toMatch(/could not return to "Home"/);
  });

  it("remembers the user's network, not the device's, when it joins again to check for listening mode", async () => {
    let active = `Home:${UUID_HOME}:802-11-wireless:wlan0\n`;
    const run = fakeNmcli({ [LIST]: "Photon-AAAAAA:40\n" });
    const network = createNmcliNetwork({
      run: (command, args) => {
        if (args.includes("--active")) {
          run.calls.push("active");
          return Promise.resolve(active);
        }
        return run(command, args);
      },
    });
    await network.joinDeviceNetwork("Photon");
    active = `Photon-AAAAAA:${UUID_PHOTON}:802-11-wireless:wlan0\n`;
    await network.joinDeviceNetwork("Photon");
    await network.restore();
    expect(run.calls.at(-1)).toBe(`nmcli connection up uuid ${UUID_HOME}`);
  });
});
