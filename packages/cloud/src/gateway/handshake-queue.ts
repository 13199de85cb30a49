/**
 * The main-thread work of connecting devices, by how far the connection has got: a session's opening (its
 * Hello registered and answered) before a handshake's reply, and that before a new handshake's first step.
 * Finishing what has started first keeps the number of connections in progress small: in a storm, devices
 * complete one after another instead of all advancing together and completing late.
 */
export type HandshakeStage = "opening" | "reply" | "start";

const STAGES: readonly HandshakeStage[] = ["opening", "reply", "start"];

/**
 * Runs the gateway's connection steps one job per turn of the event loop (in `setImmediate`), so that between
 * two jobs Node reads the sockets of devices that are already in session. In a reconnect storm a connected
 * device's claim, event or ping then waits for at most one step instead of for every connection that arrived
 * before it. Jobs run by {@link HandshakeStage}, in arrival order within a stage, so none starves while the
 * storm's connections keep completing.
 */
export class HandshakeQueue {
  readonly #jobs: Record<HandshakeStage, (() => void)[]> = { opening: [], reply: [], start: [] };
  #pending = 0;
  #scheduled = false;

  /** Runs `job` on a later turn of the event loop, after the jobs queued before it at its stage or an earlier one. */
  run<T>(job: () => T, stage: HandshakeStage = "start"): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#jobs[stage].push(() => {
        try {
          resolve(job());
        } catch (error) {
          reject(error instanceof Error ? error : new Error(String(error)));
        }
      });
      this.#pending += 1;
      this.#schedule();
    });
  }

  /** Jobs waiting. */
  get pending(): number {
    return this.#pending;
  }

  #next(): (() => void) | undefined {
    for (const stage of STAGES) {
      const job = this.#jobs[stage].shift();
      if (job) {
        this.#pending -= 1;
        return job;
      }
    }
    return undefined;
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#next()?.();
      if (this.#pending > 0) this.#schedule();
    });
  }
}
