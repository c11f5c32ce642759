// TLS for tests: a self-signed certificate made by openssl (EC P-256, valid for 127.0.0.1 and
// localhost), and an HTTPS front that forwards every request to a plain-HTTP server unchanged.
import { readFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { createServer } from 'node:https'
import { join } from 'node:path'
import { listen } from './listen.ts'
import { runOk, type Teardown } from './proc.ts'

export interface TestCertificate {
  cert: string
  key: string
  certFile: string
  keyFile: string
}

export async function selfSignedCertificate(dir: string, cn = 'trustpull-test'): Promise<TestCertificate> {
  const certFile = join(dir, `${cn}.crt`)
  const keyFile = join(dir, `${cn}.key`)
  await runOk('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', `/CN=${cn}`, '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', keyFile, '-out', certFile])
  return { cert: await readFile(certFile, 'utf8'), key: await readFile(keyFile, 'utf8'), certFile, keyFile }
}

/** `https://127.0.0.1:PORT` in front of `target` (an http:// base URL); closed when the test ends. */
export async function startHttpsFront(t: Teardown, target: string, certificate: TestCertificate): Promise<{ url: string; host: string }> {
  const upstream = new URL(target)
  const server = createServer({ cert: certificate.cert, key: certificate.key }, (req, res) => {
    const forward = httpRequest({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    })
    forward.on('error', () => res.destroy())
    req.pipe(forward)
  })
  const url = (await listen(t, server)).replace(/^http:/, 'https:')
  return { url, host: new URL(url).host }
}
