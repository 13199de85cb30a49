export { CloudLink } from "./cloud-link.js";
export type {
  CloudFunction,
  CloudLinkEvents,
  CloudLinkOptions,
  CloudProtocol,
  CloudSessionStore,
  SavedCloudSession,
  CloudVariable,
  GatewayAddress,
  ReconnectOptions,
} from "./cloud-link.js";
export { parseGatewayList, resolveCloudTarget } from "./cloud-target.js";
export { DeviceStateStore } from "./state.js";
export type { PersistedState, StoredCredentials } from "./state.js";
export { VirtualDevice } from "./virtual-device.js";
export type {
  CloudTarget,
  DeviceMode,
  SimulatedNetwork,
  VirtualDeviceEvents,
  VirtualDeviceOptions,
} from "./virtual-device.js";
export { startFleet } from "./fleet.js";
export type { Fleet, FleetDevice, FleetOptions } from "./fleet.js";

// SoftAP setup servers (listening mode): simple protocol over TCP 5609 and the HTTP variant (spec A.2, A.3).
export { createSoftApHandler } from "./softap/handlers.js";
export type {
  SoftApHandler,
  SoftApHandlerOptions,
  SoftApLogEntry,
  SoftApLogger,
  SoftApOutcome,
  SoftApTransport,
} from "./softap/handlers.js";
export { SOFTAP_HELLO_TEXT, startSoftApHttpServer } from "./softap/http-server.js";
export type { SoftApHttpServerOptions } from "./softap/http-server.js";
export { createMemorySetupState } from "./softap/setup-state.js";
export type {
  MaybePromise,
  MemorySetupState,
  MemorySetupStateOptions,
  SetupDeviceState,
  WifiCredentials,
} from "./softap/setup-state.js";
export {
  DEFAULT_SOFTAP_REQUEST_TIMEOUT_MS,
  handleSoftApConnection,
  startSoftApTcpServer,
} from "./softap/tcp-server.js";
export type {
  RunningSoftApServer,
  SoftApConnectionOptions,
  SoftApTcpServerOptions,
} from "./softap/tcp-server.js";
export { DtlsClient } from "./dtls-client.js";
export type { DtlsClientOptions, DtlsClientSession } from "./dtls-client.js";
