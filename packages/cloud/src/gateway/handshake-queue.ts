/**
 * Runs the gateway's RSA work one job per turn of the event loop (in `setImmediate`), so that between two
 * jobs Node reads the sockets of devices that are already connected. In a reconnect storm a connected
 * device's claim, event or ping then waits for at most one RSA operation instead of for every handshake that
 * arrived before it; the handshakes themselves take as long as before, one after another.
 */
export class HandshakeQueue {
  readonly #jobs: (() => void)[] = [];
  #scheduled = false;

  /** Runs `job` on a later turn of the event loop, after the jobs queued before it. */
  run<T>(job: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#jobs.push(() => {
        try {
          resolve(job());
        } catch (error) {
          reject(error instanceof Error ? error : new Error(String(error)));
        }
      });
      this.#schedule();
    });
  }

  /** Jobs waiting. */
  get pending(): number {
    return this.#jobs.length;
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#jobs.shift()?.();
      if (this.#jobs.length > 0) this.#schedule();
    });
  }
}
