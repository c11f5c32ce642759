// `trustpull copy SRC DST` and `trustpull copy --from-file LIST DST-PREFIX`: verified copies between
// registries, OCI layouts and archives, with the signatures and attestations that let the copy be
// verified again on the other side. Same start-up as `serve` and `verify`: config, trust roots,
// policies, upstream clients, policy gate.
import { readFile } from 'node:fs/promises'
import { loadConfig } from '../config/load.ts'
import { parseList, runBatch, type ListLine } from '../copy/batch.ts'
import { configDirOf, createCopier } from '../copy/copier.ts'
import type { CopyResult } from '../copy/result.ts'
import { CopyError } from '../copy/errors.ts'
import { createProgress } from '../copy/progress.ts'
import { exitCode, renderJson, renderTable } from '../copy/report.ts'
import { adHocPolicy, type VerifyOptions } from './verify.ts'

export interface CopyOptions extends VerifyOptions {
  fromFile?: string
  concurrency?: string
  as?: string
  authfile?: string
  destTlsVerify?: boolean
  destCertDir?: string
  progress?: boolean
}

interface Io {
  out: (s: string) => void
  err: (s: string) => void
  stderr: NodeJS.WriteStream
}

const defaultIo: Io = { out: (s) => void process.stdout.write(s), err: (s) => void process.stderr.write(s), stderr: process.stderr }

/** Resolves the exit code (see report.ts): 0 only when every image was verified and copied. */
export async function copyCommand(args: string[], options: CopyOptions, io: Io = defaultIo): Promise<number> {
  const batch = options.fromFile !== undefined
  if (batch ? args.length !== 1 : args.length !== 2) {
    io.err(batch ? 'trustpull copy: usage: trustpull copy --from-file LIST DST-PREFIX\n' : 'trustpull copy: usage: trustpull copy SRC DST\n')
    return 2
  }
  const concurrency = Number(options.concurrency ?? 4)
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) {
    io.err('trustpull copy: --concurrency takes a whole number from 1 to 64\n')
    return 2
  }
  let lines: ListLine[] | undefined
  if (batch) {
    try {
      lines = parseList(await readFile(options.fromFile!, 'utf8'))
    } catch (err) {
      io.err(
        `trustpull copy: ${err instanceof CopyError ? `${options.fromFile}: ${err.message}` : `cannot read ${options.fromFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`}\n`,
      )
      return 2
    }
  }

  const config = loadConfig(options.config, adHocPolicy(options))
  const copier = await createCopier(config, {
    configDir: configDirOf(options.config),
    auth: {
      ...(options.authfile ? { authFile: options.authfile } : {}),
      ...(options.destTlsVerify === false ? { tlsVerify: false } : {}),
      ...(options.destCertDir ? { certDir: options.destCertDir } : {}),
    },
    ...(options.trustedRoot ? { trustedRoot: options.trustedRoot } : {}),
  })
  const progress = createProgress(io.stderr, lines?.length ?? 1, options.progress !== false && !options.json)
  let results: CopyResult[]
  try {
    results = lines
      ? await runBatch(copier, lines, args[0]!, { concurrency, progress, ...(options.as ? { as: options.as } : {}) })
      : [await copier.copy({ source: args[0]!, destination: args[1]!, ...(options.as ? { as: options.as } : {}) }, 0, progress)]
  } finally {
    progress.close()
    await copier.close()
  }
  if (options.json) io.out(renderJson(results))
  else {
    io.out(renderTable(results))
    if (!batch && results[0]!.error) io.err(`trustpull copy: ${results[0]!.error.message}\n`)
  }
  return exitCode(results)
}
