// The operator page: /ui/ (denies first, the denylist, policies, trust roots, health) and
// /ui/verdicts/<digest> (every policy, authority and signature of one verdict), rendered on the
// server with Hono's JSX runtime (hono/jsx, called as functions: no build step). No script, no
// third-party asset, one inline stylesheet: it works air-gapped, without JavaScript, on a phone.
// Threat: markup injected through image names, reasons or signer identities from upstream; every
// value passes through hono/jsx's escaping, and the page forbids scripts by its CSP.
import type { Hono } from 'hono'
import { jsx, type Child, type JSXNode } from 'hono/jsx'
import { RegistryError } from '../errors.ts'
import { getVerdict, listVerdicts } from './api.ts'
import type { DenyEntry } from './denylist.ts'
import type { AdminDeps } from './deps.ts'
import { EXPIRY_WARNING_DAYS, policiesView, trustRootsView, type VerdictDetail } from './views.ts'

type Props = Record<string, unknown>

/** `h('td', {class: 'x'}, child...)`: the element form of hono/jsx without TSX. */
function h(tag: string, props: Props | null, ...children: Child[]): JSXNode {
  return jsx(tag, props, ...children)
}

const CSS = `
*{box-sizing:border-box}body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{background:#1d2330;color:#fff;padding:.7rem 1rem;display:flex;gap:1rem;align-items:baseline;flex-wrap:wrap}header a{color:#fff}
main{padding:1rem;max-width:72rem;margin:auto}h1{font-size:1.15rem;margin:0}h2{font-size:1.05rem;margin:1.4rem 0 .5rem}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:.8rem 1rem;margin-bottom:1rem;overflow-x:auto}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #eceff3;vertical-align:top}th{font-weight:600;font-size:.85rem;color:#555}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85em;word-break:break-all}
.badge{display:inline-block;padding:.05rem .45rem;border-radius:4px;font-size:.8rem;font-weight:600;text-transform:uppercase}
.deny,.fail,.error{background:#fde2e1;color:#a3191b}.allow,.pass,.ok{background:#dff5e3;color:#17672b}.warn{background:#fff1cc;color:#7a5200}
.banner{padding:.6rem .8rem;border-radius:6px;margin-bottom:1rem}form{display:flex;gap:.5rem;flex-wrap:wrap;margin-bottom:.6rem}
input,select,button{font:inherit;padding:.3rem .45rem}dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:0}dt{color:#555}dd{margin:0}
.muted{color:#666}ul{margin:.2rem 0;padding-left:1.2rem}
@media (max-width:640px){.wide{display:none}td,th{padding:.3rem}}
`

function page(title: string, ...content: Child[]): string {
  const doc = h(
    'html',
    { lang: 'en' },
    h(
      'head',
      null,
      h('meta', { charset: 'utf-8' }),
      h('meta', { name: 'viewport', content: 'width=device-width, initial-scale=1' }),
      h('title', null, `${title} · trustpull`),
      h('style', { dangerouslySetInnerHTML: { __html: CSS } }),
    ),
    h('body', null, h('header', null, h('h1', null, h('a', { href: '/ui/' }, 'trustpull')), h('span', null, title)), h('main', null, ...content)),
  )
  return `<!doctype html>${doc.toString() as string}`
}

const badge = (text: string): JSXNode => h('span', { class: `badge ${text}` }, text)
const short = (digest: string): string => `${digest.slice(0, 19)}…`
const when = (iso: string): string => iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z')
const clientsText = (clients: Record<string, number>): string =>
  Object.entries(clients)
    .sort((a, b) => b[1] - a[1])
    .map(([name, n]) => `${name} ×${n}`)
    .join(', ')

export function mountUi(app: Hono, deps: AdminDeps): void {
  app.use(
    '/ui/*',
    async (c, next) => {
      c.set('route', 'admin')
      await next()
    },
    deps.access,
    async (c, next) => {
      await next()
      c.header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'")
      c.header('x-content-type-options', 'nosniff')
    },
  )
  app.get('/ui', (c) => c.redirect('/ui/'))

  app.get('/ui/', async (c) => {
    const query = c.req.query()
    const [verdicts, health] = await Promise.all([listVerdicts(deps, { ...query, limit: query.limit ?? '200' }), deps.health()])
    const policies = policiesView(deps.policySet())
    const roots = trustRootsView(deps.trustRoots())
    const filter = h(
      'form',
      { method: 'get', action: '/ui/' },
      h(
        'select',
        { name: 'result', 'aria-label': 'result' },
        ...['', 'deny', 'warn', 'allow', 'error'].map((r) => h('option', { value: r, selected: (query.result ?? '') === r }, r || 'any result')),
      ),
      h('input', { name: 'image', placeholder: 'image glob, e.g. ghcr.io/org/**', value: query.image ?? '', 'aria-label': 'image glob' }),
      h('button', { type: 'submit' }, 'Filter'),
    )
    const rows = verdicts.map((v) =>
      h(
        'tr',
        { class: 'verdict' },
        h('td', null, badge(v.result)),
        h('td', null, h('a', { href: `/ui/verdicts/${v.digest}` }, v.image), h('div', { class: 'mono muted' }, short(v.digest))),
        h('td', null, v.reason),
        h('td', { class: 'wide' }, when(v.at), v.cached ? h('div', { class: 'muted' }, 'cached') : ''),
        h('td', { class: 'wide' }, clientsText(v.clients)),
      ),
    )
    const expiring = roots.filter((r) => r.daysToFirstExpiry !== null && r.daysToFirstExpiry < EXPIRY_WARNING_DAYS)
    return c.html(
      page(
        'verdicts',
        ...expiring.map((r) => h('div', { class: 'banner warn' }, `Trust root ${r.name}: its first certificate or key expires in ${r.daysToFirstExpiry} days (${r.firstExpiry}).`)),
        h(
          'section',
          null,
          h('h2', null, 'Verdicts (denies first)'),
          filter,
          verdicts.length
            ? h(
                'table',
                null,
                h(
                  'thead',
                  null,
                  h(
                    'tr',
                    null,
                    h('th', null, 'result'),
                    h('th', null, 'image'),
                    h('th', null, 'reason'),
                    h('th', { class: 'wide' }, 'last pull'),
                    h('th', { class: 'wide' }, 'pulled by'),
                  ),
                ),
                h('tbody', null, ...rows),
              )
            : h('p', { class: 'muted' }, 'No verdicts recorded yet.'),
        ),
        denylistSection(deps.denylist.list()),
        h(
          'section',
          null,
          h('h2', null, 'Policies in force'),
          h('p', { class: 'muted' }, `No policy matches: ${policies.noMatchPolicy}. Fingerprint `, h('code', null, policies.fingerprint.slice(0, 16))),
          h(
            'table',
            null,
            h('thead', null, h('tr', null, h('th', null, 'policy'), h('th', null, 'mode'), h('th', null, 'images'), h('th', null, 'authorities'))),
            h(
              'tbody',
              null,
              ...policies.policies.map((p) =>
                h(
                  'tr',
                  null,
                  h('td', null, p.name, h('div', { class: 'muted' }, p.origin)),
                  h('td', null, badge(p.mode === 'enforce' ? 'deny' : 'warn'), ' ', p.mode),
                  h('td', { class: 'mono' }, p.images.join(' ')),
                  h('td', null, p.authorities.map((a) => `${a.name} (${a.type})`).join(', ')),
                ),
              ),
            ),
          ),
        ),
        h(
          'section',
          null,
          h('h2', null, 'Trust roots'),
          h(
            'table',
            null,
            h('thead', null, h('tr', null, h('th', null, 'name'), h('th', null, 'content hash'), h('th', null, 'first expiry'))),
            h(
              'tbody',
              null,
              ...roots.map((r) =>
                h(
                  'tr',
                  null,
                  h('td', null, r.name, h('div', { class: 'muted' }, r.source)),
                  h('td', { class: 'mono' }, r.contentHash.slice(0, 23)),
                  h(
                    'td',
                    null,
                    r.firstExpiry ? `${when(r.firstExpiry)} (${r.daysToFirstExpiry} days)` : 'none',
                    r.daysToFirstExpiry !== null && r.daysToFirstExpiry < EXPIRY_WARNING_DAYS ? h('span', null, ' ', badge('warn')) : '',
                  ),
                ),
              ),
            ),
          ),
        ),
        h(
          'section',
          null,
          h('h2', null, 'Health'),
          h(
            'dl',
            null,
            h('dt', null, 'ready'),
            h('dd', null, badge(health.ready ? 'ok' : 'fail')),
            ...Object.entries(health.checks).flatMap(([k, v]) => [h('dt', null, k), h('dd', null, Array.isArray(v) ? v.join(', ') || 'none' : String(v))]),
          ),
        ),
      ),
    )
  })

  app.get('/ui/verdicts/:digest', async (c) => {
    let detail: Awaited<ReturnType<typeof getVerdict>>
    try {
      detail = await getVerdict(deps, c.req.param('digest'))
    } catch (err) {
      if (err instanceof RegistryError && (err.code === 'NOT_FOUND' || err.code === 'BAD_REQUEST')) {
        return c.html(page('not found', h('section', null, h('p', null, err.message), h('p', null, h('a', { href: '/ui/' }, 'All verdicts')))), err.status as 404 | 400)
      }
      throw err
    }
    return c.html(page(`${detail.image}@${short(detail.digest)}`, ...verdictPage(detail)))
  })
}

function verdictPage(v: VerdictDetail & { denylisted: DenyEntry | null }): JSXNode[] {
  const out: JSXNode[] = []
  if (v.denylisted)
    out.push(
      h(
        'div',
        { class: 'banner deny', id: 'denylisted' },
        `On the denylist: ${v.denylisted.reason || 'no reason given'} (added by ${v.denylisted.addedBy}, ${when(v.denylisted.addedAt)})`,
      ),
    )
  out.push(
    h(
      'section',
      null,
      h('h2', null, badge(v.result), ' ', v.image),
      h('p', { class: 'reason', id: 'reason' }, v.reasons[0] ?? ''),
      v.reasons.length > 1 ? h('ul', null, ...v.reasons.slice(1).map((r) => h('li', null, r))) : '',
      h(
        'dl',
        null,
        h('dt', null, 'digest'),
        h('dd', { class: 'mono' }, v.digest),
        h('dt', null, 'asked for'),
        h('dd', { class: 'mono' }, v.reference),
        h('dt', null, 'last pull'),
        h('dd', null, `${when(v.at)} ${v.cached ? '(verdict from the cache)' : `(verified in ${v.durationMs} ms)`}`),
        h('dt', null, 'first seen'),
        h('dd', null, when(v.firstSeen)),
        h('dt', null, 'pulled by'),
        h('dd', null, `${clientsText(v.clients)} — ${v.pulls} pulls`),
        h('dt', null, 'trust roots'),
        h('dd', { class: 'mono' }, v.trustRoots.map((r) => `${r.name} ${r.version.slice(0, 23)}`).join(', ') || 'none'),
        h('dt', null, 'policy fingerprint'),
        h('dd', { class: 'mono' }, v.policyFingerprint.slice(0, 16)),
      ),
    ),
  )
  if (v.policies.length === 0) out.push(h('section', null, h('p', { class: 'muted' }, 'No policy evaluation is recorded for this digest.')))
  for (const p of v.policies) {
    out.push(
      h(
        'section',
        { class: 'policy' },
        h('h2', null, `Policy ${p.name} `, badge(p.result), h('span', { class: 'muted' }, ` ${p.mode} · ${p.origin}`)),
        ...p.authorities.map((a) =>
          h(
            'div',
            { class: 'authority' },
            h('h3', null, `Authority ${a.name} (${a.type}) `, badge(a.ok ? 'pass' : 'fail')),
            a.reasons.length ? h('ul', null, ...a.reasons.map((r) => h('li', null, r))) : '',
            a.evidence.length
              ? h(
                  'table',
                  null,
                  h(
                    'thead',
                    null,
                    h('tr', null, h('th', null, 'found'), h('th', null, 'where'), h('th', null, 'code'), h('th', null, 'signer'), h('th', { class: 'wide' }, 'detail')),
                  ),
                  h(
                    'tbody',
                    null,
                    ...a.evidence.map((e) =>
                      h(
                        'tr',
                        { class: 'evidence' },
                        h('td', null, `${e.kind} (${e.format})`, e.predicateType ? h('div', { class: 'mono muted' }, e.predicateType) : ''),
                        h('td', { class: 'mono' }, `${e.where.repository} via ${e.where.via} ${short(e.where.manifestDigest)}`),
                        h('td', null, h('span', { class: `badge code ${e.ok ? 'ok' : 'fail'}` }, e.code)),
                        h('td', { class: 'mono' }, e.signer ? (e.signer.subject ? `${e.signer.subject} (${e.signer.issuer ?? '?'})` : `key ${e.signer.keyHint ?? '?'}`) : ''),
                        h('td', { class: 'wide' }, e.reason ?? (e.tlog ? `tlog index ${e.tlog.logIndex}` : '')),
                      ),
                    ),
                  ),
                )
              : h('p', { class: 'muted' }, 'No signature or attestation was found for this authority.'),
          ),
        ),
      ),
    )
  }
  out.push(h('p', null, h('a', { href: '/ui/' }, '← all verdicts')))
  return out
}

function denylistSection(entries: DenyEntry[]): JSXNode {
  const target = (e: DenyEntry): string => (e.kind === 'digest' ? e.digest : e.kind === 'identity' ? `${e.subject} (${e.issuer})` : `key ${e.keyHint}`)
  return h(
    'section',
    null,
    h('h2', null, `Denylist (${entries.length})`),
    entries.length
      ? h(
          'table',
          null,
          h('thead', null, h('tr', null, h('th', null, 'kind'), h('th', null, 'target'), h('th', null, 'reason'), h('th', { class: 'wide' }, 'added'))),
          h(
            'tbody',
            null,
            ...entries.map((e) =>
              h('tr', null, h('td', null, e.kind), h('td', { class: 'mono' }, target(e)), h('td', null, e.reason), h('td', { class: 'wide' }, `${e.addedBy}, ${when(e.addedAt)}`)),
            ),
          ),
        )
      : h('p', { class: 'muted' }, 'Empty. Add with: trustpull deny add --digest D --reason TEXT --server URL'),
  )
}
