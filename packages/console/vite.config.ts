import { defineConfig } from "vite";

// The console is served by `roost serve` at /console/. The workspace packages are bundled from their
// TypeScript sources (the `roost-source` export condition), so the console builds without their tsc output.
export default defineConfig({
  base: "/console/",
  resolve: { conditions: ["roost-source", "browser", "module", "import", "default"] },
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: { outDir: "dist", emptyOutDir: true, target: "es2022", sourcemap: false },
});
