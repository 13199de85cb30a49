import { Command, InvalidArgumentError } from "commander";

import { serve } from "./serve.js";

function integer(name: string, { min = 0, max = 65_535 } = {}) {
  return (value: string): number => {
    if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
      throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
    }
    return Number(value);
  };
}

/** Builds the `roost` command line. `env` is read here and nowhere below. */
export function createProgram(env: NodeJS.ProcessEnv = process.env): Command {
  const program = new Command("roost")
    .description("Roost: a self-hosted, Particle-compatible device cloud for claiming and onboarding devices")
    .showHelpAfterError();

  program
    .command("serve")
    .description("Start the cloud: the Particle-compatible HTTP API on --port")
    .option("-p, --port <port>", "HTTP port (0 picks a free one)", integer("port"), 8080)
    .option("--host <address>", "address to listen on", "127.0.0.1")
    .option("-d, --data <dir>", "data folder for the embedded SQLite database and server keys", "./.roost")
    .option(
      "--database-url <url>",
      "PostgreSQL URL (postgres://…) instead of SQLite; also ROOST_DATABASE_URL",
      env.ROOST_DATABASE_URL,
    )
    .option(
      "--device-port <port>",
      "TCP port of the device gateway (0 picks a free one)",
      integer("device-port"),
      5683,
    )
    .option(
      "--auto-register-devices",
      "register an unknown device's offered key instead of refusing it (development only)",
      false,
    )
    .option("--allow-signup", "open POST /v1/users so that anyone can create an account", false)
    .option(
      "--claim-code-ttl <seconds>",
      "claim code lifetime in seconds",
      integer("claim-code-ttl", { min: 1, max: 31_536_000 }),
    )
    .option(
      "--log-level <level>",
      "log level: fatal, error, warn, info, debug, trace or silent",
      env.ROOST_LOG_LEVEL ?? "info",
    )
    .addHelpText(
      "after",
      "\nExamples:\n  roost serve --allow-signup\n  roost serve --port 0 --data /tmp/roost\n  roost serve --database-url postgres://postgres@127.0.0.1:5432/roost",
    )
    .action(
      async (options: {
        port: number;
        host: string;
        data: string;
        databaseUrl?: string;
        allowSignup: boolean;
        claimCodeTtl?: number;
        logLevel: string;
        devicePort: number;
        autoRegisterDevices: boolean;
      }) => {
        const cloud = await serve(
          { ...options, databaseUrl: options.databaseUrl || undefined, claimCodeTtl: options.claimCodeTtl },
          (line) => console.log(line),
        );
        await new Promise<void>((resolve) => {
          const stop = (signal: NodeJS.Signals) => {
            console.log(`Received ${signal}, stopping`);
            process.off("SIGINT", stop);
            process.off("SIGTERM", stop);
            void cloud.close().then(resolve);
          };
          process.on("SIGINT", stop);
          process.on("SIGTERM", stop);
        });
      },
    );
  return program;
}

/** Runs the command line and returns the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    await createProgram().parseAsync(argv);
    return 0;
  } catch (error) {
    console.error(`roost: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  }
}
