/** One distribution drawn as bars. */
export interface HistogramSeries {
  readonly label: string;
  readonly color: string;
  readonly values: readonly number[];
}

/** A vertical line at a value (a percentile, a target). */
export interface HistogramMarker {
  readonly label: string;
  readonly value: number;
  readonly color: string;
  readonly dashed?: boolean;
}

/** Options of {@link histogramSvg}. */
export interface HistogramOptions {
  readonly title: string;
  readonly subtitle?: string;
  /** Unit of the values, for the x axis. */
  readonly unit: string;
  readonly series: readonly HistogramSeries[];
  readonly markers?: readonly HistogramMarker[];
  /** @default 860 */
  readonly width?: number;
  /** @default 440 */
  readonly height?: number;
  /** Number of bins the range is cut into, roughly. @default 40 */
  readonly bins?: number;
}

const FONT = "font-family='system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif'";

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (char) => `&#${char.charCodeAt(0)};`);
}

/** The "nice" step (1, 2 or 5 times a power of ten) closest above `raw`. */
function niceStep(raw: number): number {
  if (!(raw > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / power;
  return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power;
}

function formatNumber(value: number): string {
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(3)));
}

/**
 * A histogram as a standalone SVG document (plain text, no chart library): overlaid translucent bars per
 * series, labelled axes, and vertical markers for percentiles and targets. Opens in any browser.
 */
export function histogramSvg(options: HistogramOptions): string {
  const { width = 860, height = 440, bins = 40, markers = [] } = options;
  const legendHeight = 18 * options.series.length;
  const margin = { top: 64 + legendHeight, right: 24, bottom: 56, left: 64 };
  const plotWidth = width - margin.left - margin.right;
  const plotHeight = height - margin.top - margin.bottom;
  const all = options.series.flatMap((series) => series.values);
  const markerMax = Math.max(0, ...markers.map((marker) => marker.value));
  const maxValue = Math.max(1e-9, ...all, markerMax);
  const step = niceStep(maxValue / bins);
  const binCount = Math.max(1, Math.ceil(maxValue / step + 1e-9));
  // One empty bin of headroom, so that the largest values and their markers are not on the edge.
  const xMax = (binCount + 1) * step;
  const counts = options.series.map((series) => {
    const histogram = new Array<number>(binCount).fill(0);
    for (const value of series.values) {
      const bin = Math.min(binCount - 1, Math.max(0, Math.floor(value / step)));
      histogram[bin] = (histogram[bin] ?? 0) + 1;
    }
    return histogram;
  });
  const maxCount = Math.max(1, ...counts.flat());
  const yStep = niceStep(maxCount / 5);
  const yMax = Math.ceil(maxCount / yStep) * yStep;
  const x = (value: number) => margin.left + (value / xMax) * plotWidth;
  const y = (count: number) => margin.top + plotHeight - (count / yMax) * plotHeight;

  const parts: string[] = [];
  parts.push(
    `<svg xmlns='http://www.w3.org/2000/svg' width='${width}' height='${height}' viewBox='0 0 ${width} ${height}' ${FONT}>`,
    `<rect width='${width}' height='${height}' fill='#ffffff'/>`,
    `<text x='${margin.left}' y='26' font-size='17' font-weight='600' fill='#111'>${escapeXml(options.title)}</text>`,
  );
  if (options.subtitle)
    parts.push(
      `<text x='${margin.left}' y='46' font-size='12' fill='#555'>${escapeXml(options.subtitle)}</text>`,
    );
  // Grid and y axis.
  for (let count = 0; count <= yMax; count += yStep) {
    const lineY = y(count).toFixed(1);
    parts.push(
      `<line x1='${margin.left}' x2='${margin.left + plotWidth}' y1='${lineY}' y2='${lineY}' stroke='#e5e5e5'/>`,
      `<text x='${margin.left - 8}' y='${lineY}' font-size='11' fill='#444' text-anchor='end' dominant-baseline='middle'>${count}</text>`,
    );
  }
  // Bars: one translucent bar per series per bin, drawn over each other.
  counts.forEach((histogram, index) => {
    const color = options.series[index]?.color ?? "#888";
    histogram.forEach((count, bin) => {
      if (count === 0) return;
      const left = x(bin * step);
      const barWidth = Math.max(1, x((bin + 1) * step) - left - 1);
      parts.push(
        `<rect x='${left.toFixed(1)}' y='${y(count).toFixed(1)}' width='${barWidth.toFixed(1)}' height='${(y(0) - y(count)).toFixed(1)}' fill='${color}' fill-opacity='0.55'/>`,
      );
    });
  });
  // X axis with about ten ticks.
  const xTickStep = niceStep(xMax / 10);
  parts.push(
    `<line x1='${margin.left}' x2='${margin.left + plotWidth}' y1='${y(0)}' y2='${y(0)}' stroke='#333'/>`,
  );
  for (let value = 0; value <= xMax + 1e-9; value += xTickStep) {
    const tickX = x(value).toFixed(1);
    parts.push(
      `<line x1='${tickX}' x2='${tickX}' y1='${y(0)}' y2='${y(0) + 5}' stroke='#333'/>`,
      `<text x='${tickX}' y='${y(0) + 18}' font-size='11' fill='#444' text-anchor='middle'>${formatNumber(value)}</text>`,
    );
  }
  parts.push(
    `<text x='${margin.left + plotWidth / 2}' y='${height - 14}' font-size='12' fill='#222' text-anchor='middle'>${escapeXml(options.unit)} (bins of ${formatNumber(step)})</text>`,
    `<text transform='translate(16 ${margin.top + plotHeight / 2}) rotate(-90)' font-size='12' fill='#222' text-anchor='middle'>count</text>`,
  );
  // Markers, labelled at the top of the plot, staggered so that close ones stay readable.
  markers.forEach((marker, index) => {
    const markerX = x(marker.value);
    const labelY = margin.top + 12 + (index % 4) * 13;
    // Labels sit right of their line, or left of it in the right quarter of the plot.
    const leftward = markerX > margin.left + 0.75 * plotWidth;
    parts.push(
      `<line x1='${markerX.toFixed(1)}' x2='${markerX.toFixed(1)}' y1='${margin.top}' y2='${y(0)}' stroke='${marker.color}' stroke-width='1.5'${marker.dashed ? " stroke-dasharray='5 4'" : ""}/>`,
      `<text x='${(markerX + (leftward ? -4 : 4)).toFixed(1)}' y='${labelY}' font-size='11' fill='${marker.color}' text-anchor='${leftward ? "end" : "start"}'>${escapeXml(`${marker.label} ${formatNumber(marker.value)}`)}</text>`,
    );
  });
  // Legend, under the subtitle.
  options.series.forEach((series, index) => {
    const legendY = 70 + index * 18;
    const legendX = margin.left;
    parts.push(
      `<rect x='${legendX}' y='${legendY - 10}' width='12' height='12' fill='${series.color}' fill-opacity='0.55'/>`,
      `<text x='${legendX + 18}' y='${legendY}' font-size='12' fill='#222'>${escapeXml(`${series.label} (n=${series.values.length})`)}</text>`,
    );
  });
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}
