// Child processes for tests: long-running daemons that are always killed, one-shot commands with a
// timeout, free loopback ports and temp dirs that disappear with the test.

import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

/** The one thing helpers need from a tap test: somewhere to register clean-up. */
export interface Teardown {
  teardown(fn: () => unknown): void
}

/** Where the repository lives (for `.tools/bin/cosign` and friends). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))

// setpriv makes the kernel SIGKILL a daemon when this test process dies, even by SIGKILL (tap's
// timeout ends with one), so a crashed test never leaves a registry or containerd behind.
const SETPRIV = '/usr/bin/setpriv'
const canSetPdeathsig = existsSync(SETPRIV)

// Last line of defence for a normal exit that skipped teardown (an uncaught throw).
const live = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of live) {
    try {
      child.kill('SIGKILL')
    } catch {
      // already gone
    }
  }
})

// A trustpull a test starts without storage.path would store under $XDG_DATA_HOME/trustpull: make
// that a directory of this test process's own, removed when it exits, never the user's. Tests
// still give each trustpull its own storage.path (test/helpers/trustpull.ts does).
const dataHome = mkdtempSync(join(tmpdir(), 'trustpull-test-data-'))
process.env.XDG_DATA_HOME = dataHome
process.once('exit', () => rmSync(dataHome, { recursive: true, force: true }))

/** Binds port 0 on 127.0.0.1, reads the port the kernel chose and closes again. */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no port from listen(0)')
  return address.port
}

/** A fresh directory under the OS temp dir, removed (recursively) when the test ends. */
export async function tempDir(t: Teardown, prefix = 'trustpull-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.teardown(() => rm(dir, { recursive: true, force: true, maxRetries: 3 }))
  return dir
}

/** Polls `predicate` until it returns true; throws after `timeoutMs` naming `what`. */
export async function waitFor(
  predicate: () => boolean | Promise<boolean>,
  { timeoutMs = 15_000, intervalMs = 50, what = 'condition', signal }: { timeoutMs?: number; intervalMs?: number; what?: string; signal?: AbortSignal } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    signal?.throwIfAborted()
    let ok: boolean
    try {
      ok = await predicate()
    } catch {
      ok = false
    }
    if (ok) return
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(intervalMs)
  }
}

export interface RunResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  timedOut: boolean
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv
  cwd?: string
  input?: string | Uint8Array
  /** Killed with SIGKILL after this long (default 60 s); `timedOut` is then true. */
  timeoutMs?: number
}

/** Runs a command to completion. Never throws for a non-zero exit: callers assert on `code`. */
export async function run(command: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const child = spawn(command, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: 'pipe' })
  live.add(child)
  const out: Buffer[] = []
  const err: Buffer[] = []
  child.stdout.on('data', (b: Buffer) => out.push(b))
  child.stderr.on('data', (b: Buffer) => err.push(b))
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    child.kill('SIGKILL')
  }, opts.timeoutMs ?? 60_000)
  child.stdin.on('error', () => {}) // a child that exits before reading its input
  child.stdin.end(opts.input ?? '')
  try {
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once('error', reject)
      child.once('close', (c, s) => resolve([c, s]))
    })
    return { code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), timedOut }
  } finally {
    clearTimeout(timer)
    live.delete(child)
  }
}

/** Like `run`, but throws (with stderr in the message) unless the exit code is 0. */
export async function runOk(command: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(command, args, opts)
  if (r.code !== 0) {
    const why = r.timedOut ? 'timed out' : `exited ${r.code ?? r.signal}`
    throw new Error(`${command} ${args.join(' ')} ${why}:\n${r.stderr.trim() || r.stdout.trim()}`)
  }
  return r
}

export interface DaemonOptions {
  env?: NodeJS.ProcessEnv
  cwd?: string
  /** Name in error messages (default: the command's base name). */
  name?: string
  /** Ready once this returns true (polled). */
  ready?: () => boolean | Promise<boolean>
  /** Ready once stdout or stderr prints a line matching this. */
  readyLine?: RegExp
  readyTimeoutMs?: number
  /** How long SIGTERM gets before SIGKILL (default 3 s). */
  stopGraceMs?: number
}

export interface Daemon {
  readonly child: ChildProcess
  readonly pid: number
  /** Everything the process printed on stderr (the last 64 KiB), for error messages. */
  stderr(): string
  /** Everything the process printed on stdout (the last 64 KiB). */
  stdout(): string
  /** True until the process exits. */
  running(): boolean
  /** SIGTERM, then SIGKILL after the grace period; resolves once the process is gone. Idempotent. */
  stop(): Promise<void>
}

const CAPTURE_LIMIT = 64 * 1024

function tailBuffer(): { push(b: Buffer): void; text(): string } {
  let text = ''
  return {
    push(b) {
      text += b.toString('utf8')
      if (text.length > CAPTURE_LIMIT) text = text.slice(-CAPTURE_LIMIT)
    },
    text: () => text,
  }
}

/**
 * Starts a long-running process and waits until it is ready (a polled predicate and/or a log line).
 * It is killed on `t.teardown`, and if this test process dies. If it exits before it is ready, or
 * readiness times out, the error carries what it printed on stderr.
 */
export async function startDaemon(t: Teardown, command: string, args: readonly string[], opts: DaemonOptions = {}): Promise<Daemon> {
  const name = opts.name ?? command.split('/').pop()!
  const [cmd, argv] = canSetPdeathsig ? [SETPRIV, ['--pdeathsig', 'KILL', '--', command, ...args]] : [command, [...args]]
  const child = spawn(cmd, argv, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  live.add(child)
  const err = tailBuffer()
  const out = tailBuffer()
  let exited = false
  const exit = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exited = true
      live.delete(child)
      resolve()
    })
  })
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve))

  let sawReadyLine = opts.readyLine === undefined
  const scan = (b: Buffer, into: ReturnType<typeof tailBuffer>): void => {
    into.push(b)
    if (!sawReadyLine && opts.readyLine!.test(into.text())) sawReadyLine = true
  }
  child.stderr!.on('data', (b: Buffer) => scan(b, err))
  child.stdout!.on('data', (b: Buffer) => scan(b, out))

  const graceMs = opts.stopGraceMs ?? 3_000
  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (exited) return
      child.kill('SIGTERM')
      const killer = setTimeout(() => child.kill('SIGKILL'), graceMs)
      await exit
      clearTimeout(killer)
    })()
    return stopping
  }
  t.teardown(stop)

  const daemon: Daemon = {
    child,
    pid: child.pid ?? -1,
    stderr: () => err.text(),
    stdout: () => out.text(),
    running: () => !exited,
    stop,
  }

  const timeoutMs = opts.readyTimeoutMs ?? 20_000
  const giveUp = new AbortController()
  const ready = waitFor(async () => sawReadyLine && (opts.ready === undefined || (await opts.ready())), {
    timeoutMs,
    what: `${name} to become ready`,
    signal: giveUp.signal,
  })
  const failed = Promise.race([
    exit.then(() => new Error(`${name} exited before it was ready (code ${child.exitCode}, signal ${child.signalCode})`)),
    spawnError.then((e) => new Error(`${name} could not be started: ${e.message}`)),
  ])
  const outcome = await Promise.race([
    ready.then(
      () => undefined,
      (e: Error) => e,
    ),
    failed,
  ])
  giveUp.abort()
  if (outcome !== undefined) {
    await stop()
    const printed = err.text().trim() || out.text().trim()
    throw new Error(`${outcome.message}${printed ? `\n--- ${name} output ---\n${printed.slice(-4000)}` : ''}`)
  }
  return daemon
}
