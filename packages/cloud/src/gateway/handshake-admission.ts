/**
 * Which new Gen 2 connections the gateway takes on. Anyone who can open a TCP connection makes the server do
 * an RSA decryption (the ciphertext names the device only once it is open) and hold a socket for up to the
 * handshake timeout; without a bound per source, one host could hold every file descriptor of the process or
 * keep the crypto workers busy for nothing. The same bounds as the Gen 3 gateway's (docs/security.md): a cap
 * on handshakes in progress, overall and per IP address, and, per IP address, a cap on handshakes that
 * failed (bad ciphertext, unknown device, wrong key, timeout) within a window, past which that address's new
 * connections are closed before any work until the window ends.
 */

/** The bounds of {@link HandshakeAdmission}. */
export interface AdmissionLimits {
  /** Handshakes in progress at once, over all sources. */
  readonly maxHandshakes: number;
  /** Handshakes in progress at once from one IP address. */
  readonly maxHandshakesPerAddress: number;
  /** Failed handshakes from one IP address within a window, past which it is refused until the window ends. */
  readonly maxHandshakeFailuresPerAddress: number;
  /** The failure window, in ms, from an address's first failure in it. */
  readonly handshakeFailureWindowMs: number;
}

/** What {@link HandshakeAdmission.admit} decided: take the connection, or why not. */
export type Admission = "admitted" | "too_many_handshakes" | "too_many_failures";

/** Addresses whose failures are remembered at most; past it, expired windows are dropped, then the oldest. */
const MAX_TRACKED_ADDRESSES = 10_000;

interface FailureWindow {
  readonly startedAt: number;
  count: number;
}

/** Admission of new connections by the limits above; the caller reports each admitted one's end. */
export class HandshakeAdmission {
  readonly #limits: AdmissionLimits;
  readonly #clock: () => number;
  readonly #inProgress = new Map<string, number>();
  #total = 0;
  /** Failure windows by address, oldest first (a Map keeps insertion order). */
  readonly #failures = new Map<string, FailureWindow>();

  constructor(limits: AdmissionLimits, clock: () => number = Date.now) {
    this.#limits = limits;
    this.#clock = clock;
  }

  /** Handshakes in progress now. */
  get inProgress(): number {
    return this.#total;
  }

  /** Whether to take a new connection from `address`; when admitted, call {@link finished} once when it ends. */
  admit(address: string): Admission {
    const window = this.#window(address);
    if (window && window.count >= this.#limits.maxHandshakeFailuresPerAddress) return "too_many_failures";
    const current = this.#inProgress.get(address) ?? 0;
    if (this.#total >= this.#limits.maxHandshakes || current >= this.#limits.maxHandshakesPerAddress)
      return "too_many_handshakes";
    this.#inProgress.set(address, current + 1);
    this.#total += 1;
    return "admitted";
  }

  /**
   * An admitted connection's handshake ended: with a session, or `failed`. True when this failure is the one
   * that reached the address's limit (the caller logs it once).
   */
  finished(address: string, failed: boolean): boolean {
    const current = this.#inProgress.get(address) ?? 0;
    if (current <= 1) this.#inProgress.delete(address);
    else this.#inProgress.set(address, current - 1);
    this.#total = Math.max(0, this.#total - 1);
    if (!failed) return false;
    let window = this.#window(address);
    if (!window) {
      this.#trim();
      window = { startedAt: this.#clock(), count: 0 };
      this.#failures.set(address, window);
    }
    window.count += 1;
    return window.count === this.#limits.maxHandshakeFailuresPerAddress;
  }

  /** The address's failure window if it is still open (an expired one is forgotten). */
  #window(address: string): FailureWindow | undefined {
    const window = this.#failures.get(address);
    if (!window) return undefined;
    if (this.#clock() - window.startedAt < this.#limits.handshakeFailureWindowMs) return window;
    this.#failures.delete(address);
    return undefined;
  }

  /** Makes room for one more address: expired windows go first, then the oldest ones. */
  #trim(): void {
    if (this.#failures.size < MAX_TRACKED_ADDRESSES) return;
    const now = this.#clock();
    for (const [address, window] of this.#failures)
      if (now - window.startedAt >= this.#limits.handshakeFailureWindowMs) this.#failures.delete(address);
    for (const address of this.#failures.keys()) {
      if (this.#failures.size < MAX_TRACKED_ADDRESSES) break;
      this.#failures.delete(address);
    }
  }
}
