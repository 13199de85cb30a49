export { createProgram, main } from "./main.js";
export { serve } from "./serve.js";
export type { ServeOptions } from "./serve.js";
export { DEFAULT_NETWORK, parseWifi, registerDevice, runDevice, runFleet } from "./device.js";
export type { RunningDevice } from "./device.js";
export { exportServerKey } from "./keys.js";
export { startDev } from "./dev.js";
export type { DevEnvironment, DevOptions } from "./dev.js";
