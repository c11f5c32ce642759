// /metrics on an address of its own, so scrapers need no access to the registry port. Answers
// GET /metrics only; everything else is 404.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { splitHostPort } from '../config/listen.ts'
import type { Metrics } from './metrics.ts'

export async function startMetricsServer(listen: string, metrics: Metrics): Promise<{ server: Server; url: string }> {
  const { host, port } = splitHostPort(listen)
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url !== '/metrics') {
      res.writeHead(404).end()
      return
    }
    metrics.prometheus().then(
      (text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text),
      () => res.writeHead(500).end(),
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve())
  })
  const address = server.address() as AddressInfo
  return { server, url: `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}` }
}
