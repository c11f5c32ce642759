// trustpull's own version, for --version, build_info and logs: from its package.json, two levels
// up from src/<folder>/ and one from a built package's <folder>/ (dist/ or the image's /app).
import { readFileSync } from 'node:fs'

function ownVersion(): string {
  for (const path of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8')) as { name?: string; version?: string }
      if (pkg.name === 'trustpull' && pkg.version) return pkg.version
    } catch {
      // not there: try the next place
    }
  }
  return 'unknown'
}

export const VERSION = ownVersion()
