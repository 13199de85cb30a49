export { CloudLink } from "./cloud-link.js";
export type { CloudFunction, CloudLinkEvents, CloudLinkOptions, CloudVariable } from "./cloud-link.js";
export { resolveCloudTarget } from "./cloud-target.js";
export { DeviceStateStore, MAX_CLAIM_CODE_LENGTH, SSID_SUFFIX_ALPHABET } from "./state.js";
export type { PersistedState, StoredCredentials } from "./state.js";
export { VirtualDevice, constantVariable } from "./virtual-device.js";
export type {
  CloudTarget,
  DeviceMode,
  SimulatedNetwork,
  VirtualDeviceEvents,
  VirtualDeviceOptions,
} from "./virtual-device.js";
