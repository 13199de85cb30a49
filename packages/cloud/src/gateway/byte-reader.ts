import type { Duplex } from "node:stream";

import { TruncatedFrameError } from "@roost/protocol";

/** Raised when a device does not send what the protocol expects in time. */
export class DeviceTimeoutError extends Error {
  constructor(what: string) {
    super(`timed out waiting for ${what}`);
    this.name = "DeviceTimeoutError";
  }
}

/**
 * Reads exact byte counts from a stream during the handshake, then hands the stream over to frame
 * parsing with whatever was already buffered. @see spec/device-protocols.md B.2
 */
export class ByteReader {
  readonly #stream: Duplex;
  #chunks: Buffer[] = [];
  #length = 0;
  #ended = false;
  #wake: (() => void) | undefined;
  readonly #onData = (chunk: Buffer) => {
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    this.#wake?.();
  };
  readonly #onEnd = () => {
    this.#ended = true;
    this.#wake?.();
  };

  constructor(stream: Duplex) {
    this.#stream = stream;
    stream.on("data", this.#onData);
    stream.on("end", this.#onEnd);
    stream.on("close", this.#onEnd);
  }

  /** Resolves with exactly `length` bytes; throws on timeout or when the stream ends first. */
  async read(length: number, options: { timeoutMs: number; what: string }): Promise<Uint8Array> {
    const deadline = Date.now() + options.timeoutMs;
    while (this.#length < length) {
      if (this.#ended)
        throw new TruncatedFrameError(
          `connection closed before ${options.what} (${this.#length} of ${length} bytes)`,
        );
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new DeviceTimeoutError(options.what);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
    const all = Buffer.concat(this.#chunks, this.#length);
    const result = new Uint8Array(all.subarray(0, length));
    const rest = all.subarray(length);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#length = rest.length;
    return result;
  }

  /** Stops reading; returns the bytes received beyond what was read. */
  detach(): Uint8Array {
    this.#stream.off("data", this.#onData);
    this.#stream.off("end", this.#onEnd);
    this.#stream.off("close", this.#onEnd);
    return new Uint8Array(Buffer.concat(this.#chunks, this.#length));
  }
}
