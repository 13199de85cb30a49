/**
 * How hard the fuzz tests push: seeded, so that a failure replays, and scaled, so that CI runs a bounded
 * pass and `npm run fuzz` a long one (ROOST_FUZZ_SCALE=50). ROOST_FUZZ_SEED picks another sequence.
 */
const scale = Number(process.env.ROOST_FUZZ_SCALE ?? "1");
const seed = Number(process.env.ROOST_FUZZ_SEED ?? "20261201");

/** fast-check parameters for `n` runs at scale 1. */
export function runs(n: number): { numRuns: number; seed: number } {
  return { numRuns: Math.max(1, Math.round(n * (Number.isFinite(scale) && scale > 0 ? scale : 1))), seed };
}
