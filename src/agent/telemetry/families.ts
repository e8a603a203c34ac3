/**
 * Metric families: a name, help text and label names, whose series are cells (cells.ts)
 * registered on a prom-client Registry that reads them when scraped.
 *
 * - Counters and gauges are prom-client metrics whose `collect()` hook copies the cells'
 *   (or the sources') values in at scrape time.
 * - Histograms are a prom-client `Histogram` subclass whose exported values come from the
 *   cells: prom-client has no API to set bucket counts, and observing through it costs an
 *   allocation per call (see cells.ts).
 *
 * Series are created on first use of a label combination (`child(...)`), then reused: bind
 * them once, outside hot paths.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { ApiError, Code } from '../../common/errors.ts';
import { CounterCell, HistogramCell } from './cells.ts';

/** What names a family. */
export interface FamilySpec {
  /** Full metric name, e.g. `spiffe_agent_workload_api_rpcs_total`. */
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly string[];
}

type Labels = Record<string, string>;

/** Series of one family, by label values. */
class Series<Cell> {
  readonly #labelNames: readonly string[];
  readonly #create: () => Cell;
  readonly entries = new Map<string, { readonly labels: Labels; readonly cell: Cell }>();

  constructor(labelNames: readonly string[], create: () => Cell) {
    this.#labelNames = labelNames;
    this.#create = create;
  }

  get(values: readonly string[]): Cell {
    if (values.length !== this.#labelNames.length) {
      throw new ApiError(Code.INTERNAL, `telemetry: expected ${this.#labelNames.length} label values (${this.#labelNames.join(', ')}), got ${values.length}`);
    }
    const key = values.join('\u0000');
    let entry = this.entries.get(key);
    if (entry === undefined) {
      const labels: Labels = {};
      this.#labelNames.forEach((name, i) => (labels[name] = values[i] as string));
      entry = { labels, cell: this.#create() };
      this.entries.set(key, entry);
    }
    return entry.cell;
  }
}

/** A counter family. */
export class CounterFamily {
  readonly #series: Series<CounterCell>;

  constructor(registry: Registry, spec: FamilySpec) {
    const series = new Series(spec.labelNames ?? [], () => new CounterCell());
    this.#series = series;
    new Counter({
      name: spec.name,
      help: spec.help,
      labelNames: [...(spec.labelNames ?? [])],
      registers: [registry],
      collect() {
        this.reset();
        for (const { labels, cell } of series.entries.values()) this.inc(labels, cell.value);
      },
    });
  }

  /** The series for these label values (in labelNames order), created at zero on first use. */
  child(...values: string[]): CounterCell {
    return this.#series.get(values);
  }
}

/** The exported shape of a histogram, as prom-client's own Histogram returns it. */
type HistogramExport = Awaited<ReturnType<Histogram['get']>>;

/** A prom-client Histogram whose exported values come from cells. */
class CellHistogram extends Histogram {
  readonly #spec: FamilySpec;
  readonly #bounds: readonly number[];
  readonly #series: Series<HistogramCell>;

  constructor(registry: Registry, spec: FamilySpec, bounds: readonly number[], series: Series<HistogramCell>) {
    super({ name: spec.name, help: spec.help, labelNames: [...(spec.labelNames ?? [])], buckets: [...bounds], registers: [registry] });
    this.#spec = spec;
    this.#bounds = bounds;
    this.#series = series;
  }

  override async get(): Promise<HistogramExport> {
    return this.#export();
  }

  /** prom-client's Registry prefers this method when formatting text; same data as get(). */
  async getForPromString(): Promise<HistogramExport> {
    return this.#export();
  }

  #export(): HistogramExport {
    const { name, help } = this.#spec;
    const values: HistogramExport['values'] = [];
    for (const { labels, cell } of this.#series.entries.values()) {
      const cumulative = cell.cumulative();
      this.#bounds.forEach((le, i) => values.push({ metricName: `${name}_bucket`, labels: { ...labels, le }, value: cumulative[i] as number }));
      values.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: cell.count });
      values.push({ metricName: `${name}_sum`, labels, value: cell.sum });
      values.push({ metricName: `${name}_count`, labels, value: cell.count });
    }
    // prom-client's own histograms export the same fields; `type` is the string prom-client
    // uses at run time (its typings declare an enum that does not exist at run time).
    return { name, help, type: 'histogram', aggregator: 'sum', values } as unknown as HistogramExport;
  }
}

/** A histogram family over fixed bucket upper bounds. */
export class HistogramFamily {
  readonly #series: Series<HistogramCell>;

  constructor(registry: Registry, spec: FamilySpec, bounds: readonly number[]) {
    const frozen = Object.freeze([...bounds]);
    this.#series = new Series(spec.labelNames ?? [], () => new HistogramCell(frozen));
    new CellHistogram(registry, spec, frozen, this.#series);
  }

  /** The series for these label values (in labelNames order), created empty on first use. */
  child(...values: string[]): HistogramCell {
    return this.#series.get(values);
  }
}

/** One gauge reading: label values (in labelNames order) and the value. */
export type GaugeReading = readonly [labelValues: readonly string[], value: number];

/** Registers a gauge whose series are read from `read()` at scrape time. */
export function registerGauge(registry: Registry, spec: FamilySpec, read: () => Iterable<GaugeReading>): void {
  const labelNames = spec.labelNames ?? [];
  new Gauge({
    name: spec.name,
    help: spec.help,
    labelNames: [...labelNames],
    registers: [registry],
    collect() {
      this.reset();
      for (const [values, value] of read()) {
        const labels: Labels = {};
        labelNames.forEach((name, i) => (labels[name] = values[i] ?? ''));
        this.set(labels, value);
      }
    },
  });
}
