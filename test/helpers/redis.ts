// A private redis-server per test (never the machine's own on 6379), with no persistence, that a
// test can stop and start again on the same port to see how the verdict cache copes.

import { createConnection } from 'node:net'
import { freePort, startDaemon, tempDir, type Daemon, type Teardown } from './proc.ts'

export const REDIS_BIN = process.env.TRUSTPULL_TEST_REDIS ?? '/usr/bin/redis-server'

export interface Redis {
  /** `redis://127.0.0.1:PORT`. */
  readonly url: string
  readonly port: number
  running(): boolean
  /** Stops the server (data is lost: no persistence). Idempotent. */
  stop(): Promise<void>
  /** Starts it again on the same port (no-op while running). */
  start(): Promise<void>
}

/** True when something on the port answers PING with PONG. */
export async function redisPing(port: number, timeoutMs = 1_000, password?: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port })
    let reply = ''
    const done = (ok: boolean): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => done(false), timeoutMs)
    socket.on('connect', () => socket.write(password === undefined ? 'PING\r\n' : `AUTH ${password}\r\nPING\r\n`))
    socket.on('data', (b: Buffer) => {
      reply += b.toString('utf8')
      const lines = reply.split('\r\n')
      if (password === undefined && lines.length > 1) done(reply.startsWith('+PONG'))
      if (password !== undefined && lines.length > 2) done(lines[0] === '+OK' && lines[1] === '+PONG')
    })
    socket.on('error', () => done(false))
  })
}

/** Starts redis-server on a free loopback port (`password`: requirepass); stopped when the test ends. */
export async function startRedis(t: Teardown, options: { password?: string } = {}): Promise<Redis> {
  const dir = await tempDir(t, 'trustpull-redis-')
  const port = await freePort()
  let daemon: Daemon | undefined

  const start = async (): Promise<void> => {
    if (daemon?.running()) return
    daemon = await startDaemon(
      t,
      REDIS_BIN,
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
        '--daemonize',
        'no',
        '--loglevel',
        'warning',
        ...(options.password !== undefined ? ['--requirepass', options.password] : []),
      ],
      { name: 'redis-server', ready: () => redisPing(port, 1_000, options.password) },
    )
  }
  await start()

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    running: () => daemon?.running() ?? false,
    stop: async () => {
      await daemon?.stop()
    },
    start,
  }
}
