// refusePrivateRedirects is enforced where connections are made, not only on names beforehand:
// a name resolving to a private address fails at connect time (no DNS-rebinding window).
import t from 'tap'
import { privateRefusingLookup } from '../../src/upstream/private-address.ts'

const resolve = (lookup: ReturnType<typeof privateRefusingLookup>, host: string, all: boolean) =>
  new Promise<{ err: NodeJS.ErrnoException | null; address: unknown }>((done) => lookup(host, { all }, (err, address) => done({ err, address })))

t.test('a name resolving to loopback is refused unless it is the upstream itself', async (t) => {
  const guarded = privateRefusingLookup('registry.example')
  for (const all of [true, false]) {
    const refused = await resolve(guarded, 'localhost', all)
    t.equal(refused.err?.code, 'EPRIVATEADDRESS', `all=${all}`)
    t.match(refused.err?.message, /localhost resolves to a private address; refused/)
  }
  const own = privateRefusingLookup('localhost')
  const single = await resolve(own, 'localhost', false)
  t.equal(single.err, null, 'the configured upstream may live on a private address')
  t.match(single.address, /^(127\.0\.0\.1|::1)$/)
  const many = await resolve(own, 'localhost', true)
  t.ok(Array.isArray(many.address) && (many.address as unknown[]).length > 0, 'all=true answers a list')
})

t.test('undici connections use it: a request to a private name fails before any byte is sent', async (t) => {
  const { createServer } = await import('node:http')
  const { Agent, request } = await import('undici')
  let reached = 0
  const server = createServer((_req, res) => {
    reached++
    res.end('ok')
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => server.close(() => r())))
  const port = (server.address() as { port: number }).port
  const agent = new Agent({ connect: { lookup: privateRefusingLookup('registry.example') } })
  t.teardown(() => agent.close())
  await t.rejects(request(`http://localhost:${port}/`, { dispatcher: agent }), { code: 'EPRIVATEADDRESS' })
  t.equal(reached, 0, 'the server never saw the request')
})
