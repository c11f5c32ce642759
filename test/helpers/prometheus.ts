// Reads a /metrics scrape as Prometheus would: the text exposition format (0.0.4), `# HELP` and
// `# TYPE` comments and `name{labels} value` lines, refusing any line it cannot read.
import { request } from 'undici'

export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

export function parsePrometheus(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = []
  const types = new Map<string, string>()
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    const type = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (type) {
      if (types.has(type[1]!)) throw new Error(`family ${type[1]} declared twice`)
      types.set(type[1]!, type[2]!)
    }
    if (line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/.exec(line)
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`)
    const labels: Record<string, string> = {}
    const labelText = m[2] ?? ''
    const label = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)/y
    for (let at = 0; at < labelText.length;) {
      label.lastIndex = at
      const l = label.exec(labelText)
      if (!l) throw new Error(`bad labels in: ${line}`)
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c))
      at = label.lastIndex
    }
    samples.push({ name: m[1]!, labels, value: Number(m[3]) })
  }
  return { samples, types }
}

export interface Scrape {
  text: string
  types: Map<string, string>
  /** The value of the one sample with this name and (at least) these labels; undefined when absent. */
  value(name: string, labels?: Record<string, string>): number | undefined
  /** Every sample with this name and (at least) these labels. */
  all(name: string, labels?: Record<string, string>): Sample[]
}

/** GET `${url}/metrics`, checked for status and content type, parsed. */
export async function scrape(url: string): Promise<Scrape> {
  const res = await request(`${url}/metrics`)
  const text = await res.body.text()
  if (res.statusCode !== 200) throw new Error(`/metrics answered ${res.statusCode}`)
  if (!String(res.headers['content-type']).startsWith('text/plain; version=0.0.4')) throw new Error(`content-type ${String(res.headers['content-type'])}`)
  const { samples, types } = parsePrometheus(text)
  const all = (name: string, labels: Record<string, string> = {}) => samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  return {
    text,
    types,
    all,
    value(name, labels) {
      const found = all(name, labels)
      if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`)
      return found[0]?.value
    },
  }
}
