// Node-only entry point of @roost/setup ("@roost/setup/node"): SoftAP over TCP (node:net), Wi-Fi switching
// with NetworkManager (node:child_process) and Wi-Fi password encryption (node:crypto). STYLE A.3.
export { createTcpSoftApTransport } from "./node/tcp-transport.js";
export type { TcpSoftApTransportOptions } from "./node/tcp-transport.js";
export { createNmcliNetwork, execFileRunner, splitTerseLine } from "./node/nmcli-network.js";
export type { CommandRunner, NmcliNetworkOptions } from "./node/nmcli-network.js";
export { encryptSoftApPassword } from "./node/encrypt-password.js";
