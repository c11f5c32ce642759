// The admission listener: HTTPS only (the API server calls webhooks over TLS, and a verdict read
// over plain HTTP could be forged on the way), on an address of its own so the registry port
// need not be reachable from the control plane. Bounded like the registry listener: slow or
// silent connections are closed.
import { getRequestListener } from '@hono/node-server'
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import type { Hono } from 'hono'

export interface AdmissionListener {
  /** https://HOST:PORT */
  url: string
  server: Server
  /** Re-reads the certificate and key (a cert-manager rotation); throws, keeping the old ones, when they do not load. */
  reloadTls(tls: { cert: string; key: string }): void
  close(deadlineMs?: number): Promise<void>
}

export async function startAdmissionListener(
  app: Hono,
  options: { host: string; port: number; tls: { cert: string; key: string }; headersTimeoutMs: number; requestTimeoutMs: number },
): Promise<AdmissionListener> {
  const secure = (tls: { cert: string; key: string }) => ({ cert: readFileSync(tls.cert), key: readFileSync(tls.key) })
  const server = createServer(secure(options.tls), getRequestListener(app.fetch))
  server.headersTimeout = options.headersTimeoutMs
  server.requestTimeout = options.requestTimeoutMs
  server.on('connection', (socket: Socket) => {
    setTimeout(() => socket.bytesRead === 0 && socket.destroy(), server.headersTimeout).unref()
  })
  // A plain-HTTP or broken handshake: drop the socket, nothing else.
  server.on('tlsClientError', (_err, socket) => socket.destroy())
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, options.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return {
    url: `https://${host}:${address.port}`,
    server,
    reloadTls: (tls) => server.setSecureContext(secure(tls)),
    async close(deadlineMs = 30_000) {
      const deadline = setTimeout(() => server.closeAllConnections(), deadlineMs)
      deadline.unref()
      const sweep = setInterval(() => server.closeIdleConnections(), 100)
      await new Promise<void>((resolve) => server.close(() => resolve()))
      clearTimeout(deadline)
      clearInterval(sweep)
    },
  }
}
