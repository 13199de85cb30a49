// Helpers shared by the integration tests of every package: HTTP calls against a real cloud, users,
// products and customers, device identities and links, event streams, the official softap-setup client and the real
// Device OS builds. Only for tests (run
// from source under vitest with the `roost-source` condition).
export * from "./cluster.js";
export * from "./devices.js";
export * from "./devos.js";
export * from "./http.js";
export * from "./nats.js";
export * from "./postgres.js";
export * from "./products.js";
export * from "./softap-setup.js";
export * from "./streams.js";
export * from "./receiver.js";
