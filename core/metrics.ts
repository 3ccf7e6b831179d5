/**
 * A small Prometheus registry: counters with labels, and gauges read when scraped. Rendered as
 * the text exposition format at GET /metrics.
 */
type Labels = Record<string, string>;

interface Family {
  help: string;
  type: 'counter' | 'gauge';
  values: Map<string, number>;
  read?: () => number | Promise<number>;
}

export class Metrics {
  private readonly families = new Map<string, Family>();

  counter(name: string, help: string) {
    this.families.set(name, { help, type: 'counter', values: new Map() });
    return (labels: Labels = {}, by = 1) => {
      const values = this.families.get(name)!.values;
      const key = labelText(labels);
      values.set(key, (values.get(key) ?? 0) + by);
    };
  }

  gauge(name: string, help: string, read: () => number | Promise<number>) {
    this.families.set(name, { help, type: 'gauge', values: new Map(), read });
  }

  async render(): Promise<string> {
    const lines: string[] = [];
    for (const [name, f] of this.families) {
      lines.push(`# HELP ${name} ${f.help}`, `# TYPE ${name} ${f.type}`);
      if (f.read) lines.push(`${name} ${await f.read()}`);
      else if (f.values.size === 0) lines.push(`${name} 0`);
      for (const [labels, value] of f.values) lines.push(`${name}${labels} ${value}`);
    }
    return `${lines.join('\n')}\n`;
  }
}

const labelText = (labels: Labels) => {
  const entries = Object.entries(labels);
  if (entries.length === 0) return '';
  return `{${entries.map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`))}"`).join(',')}}`;
};
