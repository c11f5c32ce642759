// A loopback HTTP proxy between trustpull and a real registry that misbehaves on demand: per
// request, a chooser picks a fault from (method, path). It records every request it saw so tests
// can assert what reached upstream (and what did not).

import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import type { Teardown } from './proc.ts'

export type Fault =
  /** Forward unchanged. */
  | { kind: 'pass' }
  /** Answer this status without asking upstream (default body: an OCI error). */
  | { kind: 'status'; status: number; body?: string | Uint8Array; headers?: Record<string, string> }
  /**
   * Forward headers and `afterBytes` of the body (default: half), then RST the connection;
   * `beforeHeaders`: RST without answering at all.
   */
  | { kind: 'reset'; afterBytes?: number; beforeHeaders?: boolean }
  /** Accept and read the request, never answer (until the proxy closes). */
  | { kind: 'hang' }
  /** Forward headers, then the body `bytesPerTick` (default 1) bytes every `intervalMs`. */
  | { kind: 'drip'; intervalMs: number; bytesPerTick?: number }
  /** Re-send the body chunked, stop after `afterBytes` (default: half) and close without the last chunk. */
  | { kind: 'truncate'; afterBytes?: number }
  /** Keep status and headers (Docker-Content-Digest too) but send other bytes; same length keeps Content-Length honest. */
  | { kind: 'replace'; body: Uint8Array | string | ((upstream: Buffer) => Uint8Array | string) }
  /** Forward, with headers set (string) or removed (null), e.g. a lying Docker-Content-Digest. */
  | { kind: 'headers'; set: Record<string, string | null> }
  /** Answer a redirect (default 307) to `location`. */
  | { kind: 'redirect'; location: string; status?: number }
  /** Wait, then forward. */
  | { kind: 'delay'; ms: number }

export interface ProxiedRequest {
  method: string
  /** Path and query, as received. */
  url: string
  /** Path without the query. */
  path: string
  headers: IncomingHttpHeaders
}

export type FaultChooser = (req: ProxiedRequest) => Fault | undefined

export interface SeenRequest extends ProxiedRequest {
  /** The fault applied (`pass` when the chooser returned undefined). */
  fault: Fault['kind']
}

export interface FaultProxy {
  /** `http://127.0.0.1:PORT`. */
  readonly url: string
  /** `127.0.0.1:PORT`. */
  readonly host: string
  readonly port: number
  /** Every request received, in order of arrival. */
  readonly requests: SeenRequest[]
  /** Replaces the fault chooser (undefined: pass everything). */
  setFault(chooser: FaultChooser | undefined): void
  /** Forgets the recorded requests. */
  clearRequests(): void
  /** Stops listening and destroys every socket, hanging ones included. Idempotent. */
  close(): Promise<void>
}

// Hop-by-hop headers are the proxy's own business (and undici refuses some of them).
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect'])

/** A copy of `bytes` with one byte flipped: same length, different digest. */
export function flipByte(bytes: Uint8Array, at = 0): Uint8Array {
  const copy = Buffer.from(bytes)
  if (copy.length > 0) copy[at % copy.length] = copy[at % copy.length]! ^ 0xff
  return copy
}

/** A chooser that applies `fault` to the first `n` requests matching `match`, then passes everything. */
export function faultTimes(n: number, fault: Fault, match: (req: ProxiedRequest) => boolean = () => true): FaultChooser {
  let left = n
  return (req) => {
    if (left <= 0 || !match(req)) return undefined
    left--
    return fault
  }
}

function forwardHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name)) continue
    out[name] = value
  }
  return out
}

function responseHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name)) continue
    out[name] = value
  }
  return out
}

/** Starts the proxy in front of `upstreamUrl`; it is closed when the test ends. */
export async function startFaultProxy(t: Teardown, upstreamUrl: string, chooser?: FaultChooser): Promise<FaultProxy> {
  const upstream = upstreamUrl.replace(/\/$/, '')
  let choose: FaultChooser | undefined = chooser
  const requests: SeenRequest[] = []
  const sockets = new Set<Socket>()
  const upstreamAborts = new Set<AbortController>()

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = req.url ?? '/'
    const seen: ProxiedRequest = { method: req.method ?? 'GET', url, path: url.split('?')[0]!, headers: req.headers }
    const fault = choose?.(seen) ?? { kind: 'pass' }
    requests.push({ ...seen, fault: fault.kind })

    if (fault.kind === 'hang') {
      req.resume()
      return
    }
    if (fault.kind === 'status') {
      req.resume()
      const body = fault.body ?? JSON.stringify({ errors: [{ code: 'UNKNOWN', message: `fault proxy: injected ${fault.status}` }] })
      res.writeHead(fault.status, {
        'content-type': fault.body === undefined ? 'application/json' : 'application/octet-stream',
        'content-length': Buffer.byteLength(body),
        ...fault.headers,
      })
      res.end(body)
      return
    }
    if (fault.kind === 'redirect') {
      req.resume()
      res.writeHead(fault.status ?? 307, { location: fault.location, 'content-length': 0 })
      res.end()
      return
    }
    if (fault.kind === 'delay') await sleep(fault.ms)

    const abort = new AbortController()
    upstreamAborts.add(abort)
    res.once('close', () => {
      abort.abort()
      upstreamAborts.delete(abort)
    })
    const hasBody = seen.method !== 'GET' && seen.method !== 'HEAD'
    const up = await request(`${upstream}${url}`, {
      method: seen.method as 'GET',
      headers: forwardHeaders(req.headers),
      body: hasBody ? req : null,
      signal: abort.signal,
    })
    const headers = responseHeaders(up.headers)
    const isHead = seen.method === 'HEAD'
    const declared = Number(headers['content-length'] ?? NaN)

    switch (fault.kind) {
      case 'pass':
      case 'delay':
      case 'headers': {
        if (fault.kind === 'headers') {
          for (const [name, value] of Object.entries(fault.set)) {
            if (value === null) delete headers[name.toLowerCase()]
            else headers[name.toLowerCase()] = value
          }
        }
        res.writeHead(up.statusCode, headers)
        for await (const chunk of up.body) {
          if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve))
        }
        res.end()
        return
      }
      case 'replace': {
        const original = Buffer.from(await up.body.arrayBuffer())
        const body = typeof fault.body === 'function' ? fault.body(original) : fault.body
        const bytes = typeof body === 'string' ? Buffer.from(body) : body
        if (!isHead && bytes.byteLength !== original.byteLength) headers['content-length'] = String(bytes.byteLength)
        res.writeHead(up.statusCode, headers)
        res.end(isHead ? undefined : bytes)
        return
      }
      case 'drip': {
        const body = Buffer.from(await up.body.arrayBuffer())
        res.writeHead(up.statusCode, headers)
        const step = fault.bytesPerTick ?? 1
        for (let i = 0; i < body.length && !res.destroyed; i += step) {
          res.write(body.subarray(i, i + step))
          await sleep(fault.intervalMs)
        }
        res.end()
        return
      }
      case 'reset':
      case 'truncate': {
        if (fault.kind === 'reset' && fault.beforeHeaders) {
          abort.abort()
          res.socket?.resetAndDestroy()
          return
        }
        const limit = Number.isFinite(declared) ? Math.max(0, declared - 1) : Infinity
        const stopAt = Math.min(fault.afterBytes ?? (Number.isFinite(declared) ? Math.floor(declared / 2) : 1), limit)
        if (fault.kind === 'truncate') delete headers['content-length'] // Node then sends chunked
        res.writeHead(up.statusCode, headers)
        // Headers go out on their own first, so `afterBytes: 0` still delivers the status line.
        res.flushHeaders()
        await new Promise<void>((resolve) => (res.socket ? res.socket.write('', () => resolve()) : resolve()))
        let sent = 0
        for await (const chunk of up.body as AsyncIterable<Buffer>) {
          const part = chunk.subarray(0, Math.max(0, stopAt - sent))
          if (part.length > 0) await new Promise<void>((resolve) => res.write(part, () => resolve()))
          sent += part.length
          if (sent >= stopAt) break
        }
        abort.abort()
        const socket = res.socket
        if (fault.kind === 'reset') socket?.resetAndDestroy()
        else socket?.end() // FIN without the terminating zero-length chunk
        return
      }
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent && !res.destroyed) {
        const body = JSON.stringify({ errors: [{ code: 'UNKNOWN', message: `fault proxy: ${String(err)}` }] })
        res.writeHead(502, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
        res.end(body)
      } else {
        res.destroy()
      }
    })
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('fault proxy: no address')
  const port = address.port

  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve())
      for (const a of upstreamAborts) a.abort()
      for (const s of sockets) s.destroy()
    })
    return closing
  }
  t.teardown(close)

  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    requests,
    setFault: (c) => {
      choose = c
    },
    clearRequests: () => {
      requests.length = 0
    },
    close,
  }
}
