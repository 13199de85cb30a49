/** Order statistics of a sample, in the sample's unit. */
export interface Summary {
  readonly count: number;
  readonly min: number;
  readonly mean: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
}

/** The nearest-rank percentile `p` (0–100) of an ascending-sorted sample; NaN when it is empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] ?? Number.NaN;
}

/** p50 / p95 / p99 and friends of a sample (which it does not modify). */
export function summarize(values: readonly number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const total = sorted.reduce((sum, value) => sum + value, 0);
  return {
    count: sorted.length,
    min: sorted[0] ?? Number.NaN,
    mean: sorted.length > 0 ? total / sorted.length : Number.NaN,
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    max: sorted.at(-1) ?? Number.NaN,
  };
}

/** Rounds for reports: 3 significant digits, at most `decimals` after the point. */
export function round(value: number, decimals = 3): number {
  if (!Number.isFinite(value)) return value;
  const magnitude = Math.floor(Math.log10(Math.abs(value) || 1));
  const digits = Math.min(decimals, Math.max(0, 2 - magnitude));
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

/** The worst event-loop delay of several processes: the largest p99 and the largest maximum, in ms. */
export function worstLoopDelay(reports: readonly { readonly loopDelayMs: { p99: number; max: number } }[]): {
  p99: number;
  max: number;
} {
  return {
    p99: Math.max(...reports.map((report) => report.loopDelayMs.p99)),
    max: Math.max(...reports.map((report) => report.loopDelayMs.max)),
  };
}
