import type { KeyObject } from "node:crypto";

import type { HandshakePlaintext, SessionCredentials } from "@roost/protocol";

/** What a crypto worker is started with. */
export interface CryptoWorkerData {
  /** The server's private key (a KeyObject crosses to the worker by structured clone). */
  readonly serverPrivateKey: KeyObject;
  /** Nice value of the worker's thread on Linux (0 = as the event loop). */
  readonly niceness: number;
}

/** One piece of asymmetric work for a worker. @see spec/device-protocols.md B.2 steps 3–4 */
export type CryptoJob =
  | {
      readonly id: number;
      readonly kind: "open-handshake";
      readonly ciphertext: Uint8Array;
      readonly nonce: Uint8Array;
    }
  | {
      readonly id: number;
      readonly kind: "handshake-reply";
      /**
       * The device's public key as SPKI DER: the worker imports it (a few µs, and part of the handshake's
       * crypto), which is cheaper to send than a KeyObject and keeps the import off the event loop.
       */
      readonly devicePublicKeyDer: Uint8Array;
      readonly credentials: SessionCredentials;
    };

/** A worker's first message: its thread's kernel id (Linux, undefined elsewhere) and the nice value it got. */
export interface CryptoWorkerStarted {
  readonly kind: "started";
  readonly tid: number | undefined;
  readonly niceness: number | undefined;
}

/** A worker's answer to the job with the same id. */
export type CryptoJobResult =
  | { readonly id: number; readonly ok: true; readonly plaintext: HandshakePlaintext }
  | { readonly id: number; readonly ok: true; readonly reply: Uint8Array }
  | {
      readonly id: number;
      readonly ok: false;
      readonly message: string;
      /** The device key could not be imported (the handshake ends as a key mismatch). */
      readonly keyRefused?: boolean;
    };
