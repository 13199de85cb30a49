/**
 * Switching between the user's network and the device's access point, behind one interface (STYLE C.17):
 * the phone or computer has to join `Photon-XXXXXX` to talk to the device, and get back to a network with
 * Internet access to verify the claim. The no-op implementation is for virtual devices on 127.0.0.1 and for
 * apps that ask the user to switch by hand; `createNmcliNetwork` in `@roost/setup/node` drives Linux
 * NetworkManager.
 * @see spec/device-protocols.md A.1, spec/cloud-api.md §7
 */

/** The device network that was joined. */
export interface JoinedNetwork {
  /** Its SSID, when the switcher knows it (the no-op one does not). */
  ssid: string | undefined;
}

/** Joins the device's access point and returns to the previous network. */
export interface NetworkSwitcher {
  /**
   * Joins the device's access point: the strongest network whose SSID is `<ssidPrefix>-<code>`. Rejects
   * with a `SetupError` `DEVICE_NOT_FOUND` when none is visible, `NETWORK_SWITCH_FAILED` when joining fails.
   */
  joinDeviceNetwork(ssidPrefix: string): Promise<JoinedNetwork>;
  /**
   * Returns to the network in use before {@link joinDeviceNetwork}. Safe to call when nothing was joined.
   * Rejects with a `SetupError` `NETWORK_SWITCH_FAILED`.
   */
  restore(): Promise<void>;
}

/**
 * A switcher that does nothing: the device is reachable without switching (a virtual device on 127.0.0.1,
 * or the user joined its network by hand).
 */
export function createNoopNetwork(): NetworkSwitcher {
  return {
    joinDeviceNetwork: () => Promise.resolve({ ssid: undefined }),
    restore: () => Promise.resolve(),
  };
}
