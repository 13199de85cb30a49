import { defaultServerConditions } from "vite";
import { defineConfig } from "vitest/config";

// Tests run against the TypeScript sources of the workspace packages (the `roost-source` export
// condition), so no build is needed before `vitest`.
export default defineConfig({
  resolve: { conditions: ["roost-source", ...defaultServerConditions] },
  ssr: { resolve: { conditions: ["roost-source", ...defaultServerConditions] } },
  test: {
    include: ["packages/*/test/**/*.test.ts", "examples/*/test/**/*.test.ts", "bench/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
  },
});
