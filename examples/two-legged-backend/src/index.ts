export { customerEmailFor, startBackend } from "./backend.js";
export type { Backend, BackendOptions, RoostProductCredentials } from "./backend.js";
