// The Device Setup SDK. Browser- and React-Native-safe: nothing here imports node:*. The Node-only transport
// (SoftAP over TCP), Wi-Fi switching (nmcli) and password encryption are in "@roost/setup/node" (STYLE A.3).
export { runSetup, decideOwnership } from "./setup.js";
export { DEFAULT_SETUP_TIMEOUTS, SETUP_STEPS } from "./types.js";
export type {
  EncryptPassword,
  OwnershipDecision,
  ProductRef,
  SetupMode,
  SetupModeKind,
  SetupOptions,
  SetupProgress,
  SetupResult,
  SetupStep,
  SetupTimeouts,
  WifiCredentials,
} from "./types.js";
export { isSetupError, SETUP_ERROR_CODES, SETUP_ERROR_HINTS, SetupError, toSetupError } from "./errors.js";
export type { SetupErrorCode, SetupErrorDetails, SetupErrorOptions } from "./errors.js";
export { createHttpSoftApTransport, createSoftApClient } from "./softap.js";
export type {
  ConfigureWifiOptions,
  HttpSoftApTransportOptions,
  SoftApClient,
  SoftApDeviceInfo,
  SoftApTransport,
  WifiNetwork,
} from "./softap.js";
export { createNoopNetwork } from "./network.js";
export type { JoinedNetwork, NetworkSwitcher } from "./network.js";
