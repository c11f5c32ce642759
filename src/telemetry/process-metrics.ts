// The standard process_* and nodejs_* metric families, as prom-client's collectDefaultMetrics
// names and types them, so stock Node.js dashboards and alerts work on trustpull unchanged.
// Threat: none to the request path — every value is read at scrape time except the event-loop
// delay histogram and the GC observer, both maintained by Node itself; one registry per process
// (the figures are the process's, however many servers it runs), never the global one.
import { collectDefaultMetrics, Registry } from 'prom-client'

let registry: Registry | undefined

/** The registry of the process metrics, created (and its collectors started) on first use. */
function processRegistry(): Registry {
  if (!registry) {
    registry = new Registry()
    collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 10 })
  }
  return registry
}

/** Starts the collectors now, so the first scrape already has event-loop and GC samples. */
export function startProcessMetrics(): void {
  processRegistry()
}

/** The Prometheus text exposition of the process metrics. */
export async function processMetricsText(): Promise<string> {
  return processRegistry().metrics()
}
