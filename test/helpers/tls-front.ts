// An HTTPS front for a plain-HTTP test registry, with a certificate from a CA made for the test
// (openssl): the upstream a private CA bundle (`upstreams[].ca`) is needed for.
import { createServer } from 'node:https'
import { request } from 'node:http'
import { readFile, writeFile } from 'node:fs/promises'
import type { AddressInfo, Socket } from 'node:net'
import { join } from 'node:path'
import { runOk, tempDir, type Teardown } from './proc.ts'

export interface TlsFront {
  /** https://localhost:PORT (the certificate names localhost and 127.0.0.1) */
  url: string
  port: number
  /** The PEM file of the CA that signed the front's certificate. */
  caFile: string
  /** Requests it answered. */
  requests: number
}

export async function startTlsFront(t: Teardown, backendUrl: string): Promise<TlsFront> {
  const dir = await tempDir(t, 'trustpull-tls-front-')
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']
  await runOk('openssl', ['req', '-x509', ...ec, '-days', '1', '-subj', '/CN=trustpull test CA', '-keyout', 'ca.key', '-out', 'ca.crt'], { cwd: dir })
  await runOk('openssl', ['req', ...ec, '-subj', '/CN=localhost', '-keyout', 'tls.key', '-out', 'tls.csr'], { cwd: dir })
  await writeFile(join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n')
  await runOk('openssl', ['x509', '-req', '-in', 'tls.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'ext.cnf', '-out', 'tls.crt'], {
    cwd: dir,
  })
  const backend = new URL(backendUrl)
  const sockets = new Set<Socket>()
  const front: TlsFront = { url: '', port: 0, caFile: join(dir, 'ca.crt'), requests: 0 }
  const server = createServer({ cert: await readFile(join(dir, 'tls.crt')), key: await readFile(join(dir, 'tls.key')) }, (req, res) => {
    front.requests++
    const upstream = request({ host: backend.hostname, port: backend.port, path: req.url, method: req.method, headers: { ...req.headers, host: backend.host } }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    })
    upstream.once('error', () => res.destroy())
    req.pipe(upstream)
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  )
  front.port = (server.address() as AddressInfo).port
  front.url = `https://localhost:${front.port}`
  return front
}
