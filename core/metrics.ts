import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

type Labels = Record<string, string>;

/** Seconds, from 1 ms to 10 s: a PUBACK or a REST answer. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * One process's Prometheus registry (prom-client), rendered at GET /metrics: the default
 * process metrics (CPU, RSS, heap, event-loop lag, GC, handles) and the chat's own counters,
 * gauges (read when scraped) and latency histograms. A registry per server, not the global
 * one, so that several servers in one process (the tests) keep their figures apart.
 */
export class Metrics {
  private readonly registry = new Registry();

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  counter(name: string, help: string, labelNames: readonly string[] = []) {
    const c = new Counter({ name, help, labelNames, registers: [this.registry] });
    return (labels: Labels = {}, by = 1) => c.inc(labels, by);
  }

  gauge(name: string, help: string, read: () => number | Promise<number>) {
    new Gauge({
      name, help, registers: [this.registry],
      // A reading that fails (Redis down, say) shows as NaN; /metrics itself still answers.
      async collect() {
        this.set(await Promise.resolve().then(read).catch(() => Number.NaN));
      },
    });
  }

  /** Observes durations in seconds; returns `(seconds, labels)`. */
  histogram(name: string, help: string, labelNames: readonly string[] = []) {
    const h = new Histogram({ name, help, labelNames, buckets: LATENCY_BUCKETS, registers: [this.registry] });
    return (seconds: number, labels: Labels = {}) => h.observe(labels, seconds);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
