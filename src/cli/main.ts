#!/usr/bin/env node
// The trustpull command: serve, verify, verify-bundle.
import { Command } from 'commander'
import { ConfigError } from '../config/load.ts'
import { serveCommand } from './serve.ts'

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

try {
  await program.parseAsync(process.argv)
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(`trustpull: ${err.message}`)
    process.exit(2)
  }
  throw err
}
