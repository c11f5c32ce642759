// Debian's nginx as a plain reverse proxy in front of the registry, the way one is usually set up:
// `proxy_pass` and nothing else (default buffering, temp files, HTTP/1.0 upstream), one worker.
// Its config, pid, logs and temp dirs live in a directory of its own; it listens on a free port.
import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'undici'
import { freePort, waitFor } from '../../test/helpers/proc.ts'
import { startProcess, type BenchProcess, type Scope } from './harness.ts'

export const NGINX_BIN = process.env.TRUSTPULL_BENCH_NGINX ?? '/usr/sbin/nginx'

export interface Nginx extends BenchProcess {
  url: string
  /** The worker processes (children of the master, which is `pid`). */
  workerPids(): number[]
}

export async function startNginx(scope: Scope, upstreamUrl: string): Promise<Nginx> {
  const dir = await scope.tempDir('trustpull-bench-nginx-')
  // Workers run as an unprivileged user when nginx starts as root: they need to reach their temp dirs.
  chmodSync(dir, 0o755)
  const port = await freePort()
  const conf = join(dir, 'nginx.conf')
  writeFileSync(
    conf,
    `daemon off;
worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${join(dir, 'client_body')};
  proxy_temp_path ${join(dir, 'proxy')};
  fastcgi_temp_path ${join(dir, 'fastcgi')};
  uwsgi_temp_path ${join(dir, 'uwsgi')};
  scgi_temp_path ${join(dir, 'scgi')};
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass ${upstreamUrl};
    }
  }
}
`,
  )
  const proc = startProcess(scope, dir, 'nginx', NGINX_BIN, ['-p', dir, '-c', conf])
  const url = `http://127.0.0.1:${port}`
  await waitFor(
    async () => {
      if (proc.child.exitCode !== null) throw new Error('nginx exited')
      const res = await request(`${url}/v2/`)
      await res.body.dump()
      return res.statusCode === 200
    },
    { timeoutMs: 15_000, what: 'nginx to proxy /v2/' },
  )
  const workerPids = () => readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  return { ...proc, url, workerPids }
}
