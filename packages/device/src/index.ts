export { CloudLink } from "./cloud-link.js";
export type { CloudFunction, CloudLinkEvents, CloudLinkOptions, CloudVariable } from "./cloud-link.js";
