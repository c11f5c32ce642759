// An in-test HTTP server on a free loopback port, closed on teardown together with every
// connection still open (keep-alive sockets would otherwise hold server.close() up).
import type { Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Teardown } from './proc.ts'

/** Listens on 127.0.0.1 port 0 and returns the server's `http://127.0.0.1:<port>` URL. */
export async function listen(t: Teardown, server: Server): Promise<string> {
  const sockets = new Set<Socket>()
  server.on('connection', (s) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const s of sockets) s.destroy()
      }),
  )
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}
