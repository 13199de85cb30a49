import { fork } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { readdirSync } from "node:fs";
import { setPriority } from "node:os";

/** The methods a child process serves: each takes one parameter object and returns a promise. */
export type ChildApi = Record<string, (params: any) => Promise<unknown>>;

interface Request {
  readonly id: number;
  readonly method: string;
  readonly params: unknown;
}

type Response =
  { readonly id: number; readonly result: unknown } | { readonly id: number; readonly error: string };

/** The environment variable that tells a child the nice value to take (see {@link StartChildOptions}). */
const NICENESS_VARIABLE = "ROOST_BENCH_NICENESS";

/** The method a parent calls last: the child cleans up, answers, then exits. */
const EXIT_METHOD = "__exit";

/** A running child process whose methods are called over IPC. */
export interface ChildHandle<TApi extends ChildApi> {
  readonly pid: number;
  call<TMethod extends keyof TApi & string>(
    method: TMethod,
    params: Parameters<TApi[TMethod]>[0],
  ): ReturnType<TApi[TMethod]>;
  /** Asks the child to exit and waits for it (killing it after `timeoutMs`). */
  exit(timeoutMs?: number): Promise<void>;
}

/** Options of {@link startChild}. */
export interface StartChildOptions {
  /** The module to run, as a file URL or path. */
  readonly entry: string | URL;
  /** Name for error messages. */
  readonly name: string;
  /**
   * Load the workspace packages from their TypeScript sources (the `roost-source` condition, through tsx), or
   * from their build (`dist/`, as `roost serve` runs). tsx transpiles with esbuild's `keepNames`, which puts
   * every named closure in dictionary mode (~256 bytes more each): servers under test use the build.
   * @default "source"
   */
  readonly packages?: "source" | "built";
  /**
   * Nice value the whole child process takes as it starts (every thread it has then; later threads inherit
   * it), Linux only: for processes that stand in for machines other than the one under test (device
   * fleets), so that they do not take the server's CPU when the cores are saturated. @default 0 (as the parent)
   */
  readonly niceness?: number;
  /** More Node or V8 flags for this process (e.g. `--trace-gc` for the server under test). */
  readonly nodeFlags?: readonly string[];
}

/** `--conditions=roost-source` and its spellings, as tsx passes them on. */
function isSourceCondition(arg: string, index: number, all: readonly string[]): boolean {
  if (/^(--conditions|-C)=roost-source$/.test(arg)) return true;
  if (arg === "roost-source" && (all[index - 1] === "--conditions" || all[index - 1] === "-C")) return true;
  return (arg === "--conditions" || arg === "-C") && all[index + 1] === "roost-source";
}

/**
 * Forks a bench process that runs under the same TypeScript loader and export conditions as this one
 * (tsx passes them in `execArgv`), with `--expose-gc` so that memory can be measured after a collection.
 */
export function startChild<TApi extends ChildApi>(options: StartChildOptions): ChildHandle<TApi> {
  const inherited =
    options.packages === "built"
      ? process.execArgv.filter((arg, index, all) => !isSourceCondition(arg, index, all))
      : process.execArgv;
  const execArgv = [...inherited, "--expose-gc", ...(options.nodeFlags ?? [])];
  const child: ChildProcess = fork(options.entry, [], {
    execArgv,
    env: options.niceness ? { ...process.env, [NICENESS_VARIABLE]: String(options.niceness) } : process.env,
    serialization: "advanced",
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  let nextId = 1;
  let exited = false;
  const exitedPromise = new Promise<void>((resolve) => {
    child.once("exit", (code, signal) => {
      exited = true;
      for (const waiter of pending.values())
        waiter.reject(new Error(`${options.name} exited (${signal ?? code}) before answering`));
      pending.clear();
      resolve();
    });
  });
  child.on("message", (message: Response) => {
    const waiter = pending.get(message.id);
    if (!waiter) return;
    pending.delete(message.id);
    if ("error" in message) waiter.reject(new Error(`${options.name}: ${message.error}`));
    else waiter.resolve(message.result);
  });
  const send = (method: string, params: unknown): Promise<unknown> => {
    if (exited) return Promise.reject(new Error(`${options.name} has exited`));
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      child.send({ id, method, params } satisfies Request);
    });
  };
  return {
    pid: child.pid ?? 0,
    call: ((method: string, params: unknown) => send(method, params)) as ChildHandle<TApi>["call"],
    async exit(timeoutMs = 10_000) {
      if (exited) return;
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      await send(EXIT_METHOD, undefined).catch(() => undefined);
      await exitedPromise;
      clearTimeout(timer);
    },
  };
}

/**
 * The child side: answers the parent's calls with `api`, one message per call. `onExit` runs before the
 * process exits on the parent's request; the process also exits when the parent goes away.
 */
export function serveChild(api: ChildApi, onExit: () => Promise<void> = () => Promise.resolve()): void {
  lowerOwnPriority();
  const reply = (response: Response) => process.send?.(response);
  process.on("message", (message: Request) => {
    if (message.method === EXIT_METHOD) {
      void onExit()
        .catch(() => undefined)
        .finally(() => {
          reply({ id: message.id, result: null });
          setTimeout(() => process.exit(0), 20);
        });
      return;
    }
    const handler = api[message.method];
    if (!handler) {
      reply({ id: message.id, error: `no method ${message.method}` });
      return;
    }
    handler(message.params).then(
      (result) => reply({ id: message.id, result }),
      (error: unknown) =>
        reply({
          id: message.id,
          error: error instanceof Error ? (error.stack ?? error.message) : String(error),
        }),
    );
  });
  process.on("disconnect", () => process.exit(0));
}

/** Milliseconds since the epoch with sub-millisecond precision, comparable across the bench's processes. */
export function wallClock(): number {
  return performance.timeOrigin + performance.now();
}

/** Takes the nice value the parent asked for, on every thread of this process (Linux: nice is per thread). */
function lowerOwnPriority(): void {
  const niceness = Number(process.env[NICENESS_VARIABLE] ?? 0);
  if (!Number.isInteger(niceness) || niceness <= 0) return;
  let threads: string[] = [];
  try {
    threads = readdirSync("/proc/self/task");
  } catch {
    threads = [String(process.pid)];
  }
  for (const tid of threads) {
    try {
      setPriority(Number(tid), niceness);
    } catch {
      // A thread that has ended, or not allowed: the bench runs on, without the priority.
    }
  }
}
