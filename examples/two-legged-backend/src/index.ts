export { customerEmailFor, startBackend, verifySignature } from "./backend.js";
export type { Backend, BackendOptions, RoostProductCredentials } from "./backend.js";
