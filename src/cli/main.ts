#!/usr/bin/env node
// The trustpull command: serve, verify, verify-bundle, copy.
import { Command } from 'commander'
import { ConfigError } from '../config/load.ts'
import { copyCommand } from './copy.ts'
import { serveCommand } from './serve.ts'
import { verifyCommand } from './verify.ts'
import { runVerifyBundle } from './verify-bundle.ts'

const program = new Command()
program
  .name('trustpull')
  .description('A verifying OCI registry pull-through proxy: serves only images whose signatures match policy.')
  .showHelpAfterError()

program
  .command('serve')
  .description('run the proxy (embedded defaults without --config: 127.0.0.1:5000, Docker Hub upstream, in-memory cache)')
  .option('-c, --config <file>', 'YAML configuration file')
  .option('-l, --listen <host:port>', 'address to listen on (overrides the config)')
  .action(serveCommand)

/** The config and the one-off authority (`--key` or `--certificate-*`) that verify and copy both take. */
function withVerificationOptions(command: Command): Command {
  return command
    .option('-c, --config <file>', 'YAML configuration file (upstreams, trust roots, policies)')
    .option('--key <file>', 'verify with this PEM public key instead of the configured policies')
    .option('--certificate-identity <subject>', 'keyless: exact certificate subject')
    .option('--certificate-identity-regexp <re>', 'keyless: certificate subject regular expression')
    .option('--certificate-oidc-issuer <url>', 'keyless: exact OIDC issuer')
    .option('--certificate-oidc-issuer-regexp <re>', 'keyless: OIDC issuer regular expression')
}

const verify = program
  .command('verify')
  .description('verify one image exactly as the proxy would: exit 0 only when it is allowed')
  .argument('<image>', '[registry/]repository[:tag|@digest]; the registry names a configured upstream')
withVerificationOptions(verify)
  .option('--json', 'print the whole verdict as JSON')
  .action(async (image: string, options) => {
    process.exitCode = await verifyCommand(image, options)
  })

const copy = program
  .command('copy')
  .description('verify an image with the configured policies, then copy it with its signatures and attestations (exit 0 only when every image was copied)')
  .argument('<args...>', 'SRC DST, or with --from-file: DST-PREFIX. SRC: registry/repo[:tag|@digest], oci:DIR[:tag], oci-archive:FILE[:tag]; DST: registry/repo[:tag], oci:DIR, oci-archive:FILE')
withVerificationOptions(copy)
  .option('-f, --from-file <list>', 'copy every image listed (one "SRC" or "SRC DST" per line) under DST-PREFIX')
  .option('--concurrency <n>', 'images copied at once with --from-file', '4')
  .option('--as <registry/repo>', 'for a layout or archive source: the name policies are matched against (default: the destination)')
  .option('--authfile <file>', 'destination credentials from this docker config.json / containers auth.json only')
  .option('--no-progress', 'no progress on stderr')
  .option('--json', 'print the results as JSON')
  .action(async (args: string[], options) => {
    process.exitCode = await copyCommand(args, options)
  })

program
  .command('verify-bundle')
  .description('verify one Sigstore bundle against a file or digest (sigstore-conformance CLI contract)')
  .allowUnknownOption()
  .helpOption(false)
  .argument('[args...]')
  .action(async (args: string[]) => {
    process.exitCode = await runVerifyBundle(args)
  })

try {
  await program.parseAsync(process.argv)
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(`trustpull: ${err.message}`)
    process.exit(2)
  }
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
    console.error(`trustpull: cannot listen: ${(err as Error).message}`)
    process.exit(2)
  }
  throw err
}
