// Prints which folder of src/ imports which (with the number of import lines), and every cycle
// between files: the view issue reviews and the lint boundaries in eslint.config.js are based on.
// Usage: npm exec -- node scripts/folder-graph.ts [--dot | --check]   (--check: only the cycles; exit 1 when there is one, type imports included)
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'

const root = resolve(import.meta.dirname, '..', 'src')
const IMPORT = /^\s*(?:import|export)\s[^'"]*?from\s+['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/gm

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []))
}

/** `src/store/fill.ts` → `store`; top-level files are their own node (`server.ts`). */
const folderOf = (file: string) => {
  const rel = relative(root, file)
  return rel.includes('/') ? rel.split('/')[0]! : rel
}

const edges = new Map<string, Set<string>>()
const folderEdges = new Map<string, number>()
for (const file of files(root)) {
  const targets = new Set<string>()
  for (const m of readFileSync(file, 'utf8').matchAll(IMPORT)) {
    const target = resolve(dirname(file), m[1] ?? m[2]!)
    targets.add(target)
    const a = folderOf(file)
    const b = folderOf(target)
    if (a !== b) folderEdges.set(`${a} -> ${b}`, (folderEdges.get(`${a} -> ${b}`) ?? 0) + 1)
  }
  edges.set(file, targets)
}

const check = process.argv.includes('--check')
if (check) {
  // the graph itself is not printed
} else if (process.argv.includes('--dot')) {
  console.log('digraph src {')
  for (const [edge, n] of [...folderEdges].sort()) console.log(`  ${edge.replace(/([\w.-]+)/g, '"$1"')} [label=${n}];`)
  console.log('}')
} else {
  console.log('folder imports (count of import lines):')
  for (const [edge, n] of [...folderEdges].sort()) console.log(`  ${edge} (${n})`)
}

// Cycles between folders: a folder pair importing each other in both directions.
const folderCycles = [...folderEdges.keys()].filter((e) => {
  const [a, b] = e.split(' -> ') as [string, string]
  return a < b && folderEdges.has(`${b} -> ${a}`)
})
console.log(`folder pairs importing each other: ${folderCycles.length ? folderCycles.map((e) => e.replace(' -> ', ' <-> ')).join(', ') : 'none'}`)

// File cycles: depth-first search, each cycle reported once by its smallest file.
const cycles = new Set<string>()
const stack: string[] = []
const state = new Map<string, 'open' | 'done'>()
function visit(file: string): void {
  state.set(file, 'open')
  stack.push(file)
  for (const next of edges.get(file) ?? []) {
    if (state.get(next) === 'open') {
      const cycle = stack.slice(stack.indexOf(next)).map((f) => relative(root, f))
      const start = cycle.indexOf([...cycle].sort()[0]!)
      cycles.add([...cycle.slice(start), ...cycle.slice(0, start)].join(' -> '))
    } else if (!state.has(next) && edges.has(next)) visit(next)
  }
  stack.pop()
  state.set(file, 'done')
}
for (const file of edges.keys()) if (!state.has(file)) visit(file)
console.log(`file import cycles: ${cycles.size}`)
for (const c of cycles) console.log(`  ${c}`)
process.exitCode = cycles.size ? 1 : 0
