#!/usr/bin/env node
// The trustpull command: serve, verify, verify-bundle, copy, deny, policy test, explain. One exit-code contract for all of them,
// so a CI gate can tell a typo from a deny:
//   0 allowed / done, 1 refused or denied, 2 usage or configuration error (nothing ran), 3 any other failure.
// An unexpected error is printed as one line (TRUSTPULL_DEBUG=1 adds the stack), never a trace that
// could carry request details.
import { Command, CommanderError, InvalidArgumentError } from 'commander'
import { ConfigError } from '../errors.ts'
import { VERSION } from '../version.ts'
// Each command's module is imported when it runs: `deny` should not wait for sigstore and the S3 SDK to load.

export const EXIT = { OK: 0, REFUSED: 1, USAGE: 2, FAILURE: 3 } as const

const version = VERSION

const program = new Command()
program
  .name('trustpull')
  .description('A verifying OCI registry pull-through proxy: serves only images whose signatures match policy.')
  .version(version, '-V, --version', 'print the version and exit')
  .showHelpAfterError()
  // Every subcommand defined below inherits this: commander throws instead of exiting with 1.
  .exitOverride()

program
  .command('serve')
  .description('run the proxy (embedded defaults without --config: 127.0.0.1:5000, Docker Hub upstream, in-memory cache)')
  .option('-c, --config <file>', 'YAML configuration file')
  .option('-l, --listen <host:port>', 'address to listen on (overrides the config)')
  .action(async (options) => (await import('./serve.ts')).serveCommand(options))

/** The config and the one-off authority (`--key` or `--certificate-*`) that verify and copy both take. */
function withVerificationOptions(command: Command): Command {
  return command
    .option('-c, --config <file>', 'YAML configuration file (upstreams, trust roots, policies)')
    .option('--key <file>', 'verify with this PEM public key instead of the configured policies')
    .option('--certificate-identity <subject>', 'keyless: exact certificate subject')
    .option('--certificate-identity-regexp <re>', 'keyless: certificate subject regular expression')
    .option('--certificate-oidc-issuer <url>', 'keyless: exact OIDC issuer')
    .option('--certificate-oidc-issuer-regexp <re>', 'keyless: OIDC issuer regular expression')
    .option('--trusted-root <file>', 'Sigstore trusted_root.json used instead of the embedded public-good root (as cosign --trusted-root)')
}

const verify = program
  .command('verify')
  .description('verify one image exactly as the proxy would: exit 0 only when it is allowed')
  .argument(
    '<image>',
    '[docker://][registry/]repository[:tag|@digest]; with --config the registry must be a configured upstream, without it the registry named is dialled (as cosign verify)',
  )
withVerificationOptions(verify)
  .option('--json', 'print the whole verdict as JSON')
  .option('--allow-http-registry', 'without --config: plain HTTP to the registry if HTTPS fails (loopback and private addresses always may, as cosign)')
  .option('--allow-insecure-registry', 'without --config: skip TLS certificate checks (self-signed or expired), and allow plain HTTP')
  .action(async (image: string, options) => {
    process.exitCode = await (await import('./verify.ts')).verifyCommand(image, options)
  })

const copy = program
  .command('copy')
  .description('verify an image with the configured policies, then copy it with its signatures and attestations (exit 0 only when every image was copied)')
  .argument(
    '<args...>',
    'SRC DST, or with --from-file: DST-PREFIX. SRC: [docker://]registry/repo[:tag|@digest], oci:DIR[:tag], oci-archive:FILE[:tag]; DST: [docker://]registry/repo[:tag], oci:DIR, oci-archive:FILE',
  )
withVerificationOptions(copy)
  .option('-f, --from-file <list>', 'copy every image listed (one "SRC" or "SRC DST" per line) under DST-PREFIX')
  .option('--concurrency <n>', 'images copied at once with --from-file', '4')
  .option('--as <registry/repo>', 'for a layout or archive source: the name policies are matched against (default: the destination)')
  .option('--authfile <file>', 'destination credentials from this docker config.json / containers auth.json only')
  .option('--dest-tls-verify [bool]', "verify the destination's TLS certificate (as skopeo; default true)", parseBool, true)
  .option('--dest-cert-dir <dir>', 'trust the CA certificates (*.crt) in this directory for the destination, as skopeo and containers-certs.d(5)')
  .option('--no-progress', 'no progress on stderr')
  .option('--json', 'print the results as JSON')
  .action(async (args: string[], options) => {
    process.exitCode = await (await import('./copy.ts')).copyCommand(args, options)
  })

program
  .command('verify-bundle')
  .description('verify one Sigstore bundle against a file or digest (sigstore-conformance CLI contract)')
  .allowUnknownOption()
  .helpOption(false)
  .argument('[args...]')
  .action(async (args: string[]) => {
    process.exitCode = await (await import('./verify-bundle.ts')).runVerifyBundle(args)
  })

/** `--server` and the credentials every command against a running proxy's API takes. */
function withServerOptions(command: Command): Command {
  return command
    .requiredOption('--server <url>', 'the trustpull proxy (its /api/v1), e.g. https://trustpull.example.com:5000')
    .option('--token-file <file>', 'bearer token from this file (default: $TRUSTPULL_TOKEN)')
    .option('--user <name>', 'basic auth as this htpasswd user; the password from $TRUSTPULL_PASSWORD')
}

/** What a denylist entry names: exactly one of these. */
function withDenyTarget(command: Command): Command {
  return command
    .option('--digest <digest>', 'an image (manifest or index) digest, sha256:...')
    .option('--identity <issuer-and-subject...>', 'a keyless signer: OIDC ISSUER and certificate SUBJECT (two values)')
    .option('--key <pemfile>', 'a signing key: its PEM public key file (cosign.pub)')
}

const deny = program.command('deny').description('the kill switch: refuse a digest, signer identity or key on every replica, whatever the policies say')
withDenyTarget(withServerOptions(deny.command('add').description('add an entry to the denylist')))
  .option('--reason <text>', 'why (shown in 403 messages, the page and the audit log)')
  .option('--json', 'print the entry as JSON')
  .action(async (options) => {
    process.exitCode = await (await import('./deny.ts')).denyAdd(options)
  })
withServerOptions(deny.command('list').description('print the denylist'))
  .option('--json', 'print the entries as JSON')
  .action(async (options) => {
    process.exitCode = await (await import('./deny.ts')).denyList(options)
  })
withDenyTarget(withServerOptions(deny.command('remove').description('remove an entry (by its target, or --id)')))
  .option('--id <id>', 'the entry id `deny list` prints')
  .action(async (options) => {
    process.exitCode = await (await import('./deny.ts')).denyRemove(options)
  })

const policy = program.command('policy').description('policies against what was actually pulled')
withServerOptions(policy.command('test').description('judge the digests a running proxy served again under a candidate config; print what would change (exit 0 when nothing does)'))
  .requiredOption('-c, --config <file>', 'the candidate configuration (its policies, trust roots, upstreams)')
  .option('--since <duration>', 'the window of the verdict history to replay', '24h')
  .option('--json', 'print the changes as JSON')
  .action(async (options) => {
    process.exitCode = await (await import('./policy-test.ts')).policyTest(options)
  })

program
  .command('explain')
  .description('what a reason code (an error body, a DENIED detail, an audit line, a copy report) means and its usual fix: exit 0 for a known code, 2 for an unknown one')
  .argument('<code>', 'e.g. DENIED, IDENTITY_MISMATCH, TLOG_MISSING (any case)')
  .option('--json', 'print {code, seen, meaning, fix} as JSON')
  .action(async (code: string, options: { json?: boolean }) => {
    process.exitCode = (await import('./explain.ts')).explainCommand(code, options)
  })

process.on('uncaughtException', (err) => fail(err))
process.on('unhandledRejection', (err) => fail(err))

try {
  await program.parseAsync(process.argv)
} catch (err) {
  fail(err)
}

/** Ends the process with the contract's code for `err`, printed on one line. */
function fail(err: unknown): never {
  if (err instanceof CommanderError) {
    // --help and --version "fail" with 0; commander has already printed the message.
    process.exit(err.exitCode === 0 ? EXIT.OK : EXIT.USAGE)
  }
  if (err instanceof ConfigError) {
    console.error(`trustpull: ${err.message}`)
    process.exit(EXIT.USAGE)
  }
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
    console.error(`trustpull: cannot listen: ${oneLine((err as Error).message)}`)
    process.exit(EXIT.USAGE)
  }
  const message = err instanceof Error ? `${code ? `${code}: ` : ''}${err.message}` : String(err)
  console.error(`trustpull: ${oneLine(message)}`)
  if (process.env.TRUSTPULL_DEBUG && err instanceof Error) console.error(err.stack)
  process.exit(EXIT.FAILURE)
}

/** skopeo's spelling: `--dest-tls-verify`, `--dest-tls-verify=false`. */
function parseBool(value: string | undefined): boolean {
  if (value === undefined || value === 'true') return true
  if (value === 'false') return false
  throw new InvalidArgumentError('true or false')
}

function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, '; ')
}
