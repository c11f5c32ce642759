// refusePrivateRedirects is enforced where connections are made, not only on names beforehand:
// a name resolving to a private address fails at connect time (no DNS-rebinding window), and
// "private" means every address that is not global unicast, however it is spelled.
import t from 'tap'
import { isPrivateAddress, privateRefusingLookup, resolvesToPrivate } from '../../src/upstream/private-address.ts'

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

t.test('every non-unicast range is refused, in every spelling; global unicast passes', async (t) => {
  const refused = [
    // IPv4: private, loopback, link-local (metadata), CGNAT, unspecified, broadcast, multicast,
    // reserved, IETF protocol assignments, benchmarking, documentation, 6to4 relay.
    '127.0.0.1',
    '127.255.255.254',
    '10.0.0.1',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '100.127.255.255',
    '0.0.0.0',
    '0.1.2.3',
    '255.255.255.255',
    '224.0.0.1',
    '239.255.255.250',
    '240.0.0.1',
    '250.1.2.3',
    '192.0.0.1',
    '192.0.0.170',
    '198.18.0.1',
    '198.19.255.255',
    '192.0.2.1',
    '198.51.100.1',
    '203.0.113.1',
    '192.88.99.1',
    // IPv6 loopback and unspecified: compressed, expanded, zero-padded.
    '::1',
    '0:0:0:0:0:0:0:1',
    '0000:0000:0000:0000:0000:0000:0000:0001',
    '::',
    '0:0:0:0:0:0:0:0',
    // IPv4-mapped and IPv4-compatible, dotted and hex, lower and upper case.
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '::FFFF:7F00:1',
    '0:0:0:0:0:ffff:7f00:1',
    '::ffff:169.254.169.254',
    '::ffff:a9fe:a9fe',
    '::ffff:10.0.0.1',
    '::127.0.0.1',
    '::7f00:1',
    '::a00:1',
    // NAT64 (well-known and local-use prefixes) of 127.0.0.1 and 10.0.0.1.
    '64:ff9b::7f00:1',
    '64:ff9b::127.0.0.1',
    '64:FF9B::7F00:1',
    '0064:ff9b:0000:0000:0000:0000:7f00:0001',
    '64:ff9b:1::a00:1',
    // 6to4 of 10.0.0.1 and 127.0.0.1, Teredo.
    '2002:a00:1::',
    '2002:0a00:0001::1',
    '2002:7f00:1::1',
    '2001::1',
    '2001:0:4136:e378:8000:63bf:3fff:fdd2',
    // Multicast, ULA, link-local, site-local, discard, documentation, benchmarking.
    'ff02::1',
    'FF0E::1',
    'ff05::1:3',
    'fc00::1',
    'fd12:3456:789a::1',
    'fe80::1',
    'FE80::1',
    'fe80::1%eth0',
    'fec0::1',
    '100::1',
    '2001:db8::1',
    '2001:DB8:0:0:0:0:0:1',
    '2001:2::1',
    '3fff::1',
  ]
  for (const address of refused) t.ok(isPrivateAddress(address), `${address} refused`)
  const allowed = ['8.8.8.8', '1.1.1.1', '140.82.112.3', '2606:4700:4700::1111', '2a00:1450:4001:81a::200e', '2600:1f18::1']
  for (const address of allowed) t.notOk(isPrivateAddress(address), `${address} allowed`)
  t.notOk(isPrivateAddress('registry.example'), 'a name is not an address (resolvesToPrivate looks it up)')
})

t.test('hostnames: decimal, octal, hex and short IPv4 spellings and bracketed IPv6 resolve to private', async (t) => {
  for (const host of ['0x7f.0.0.1', '0x7f000001', '2130706433', '0177.0.0.1', '127.1', '[::ffff:127.0.0.1]', '[64:ff9b::a9fe:a9fe]', 'localhost', 'x.localhost']) {
    t.equal(await resolvesToPrivate(host), true, host)
  }
  // What client.ts hands over is the URL's hostname: the URL parser already rewrites these spellings.
  for (const url of ['http://0x7f.1/', 'http://2130706433/', 'http://0177.0.0.1/', 'http://[::FFFF:7F00:1]/', 'http://[2002:a00:1::]/']) {
    t.equal(await resolvesToPrivate(new URL(url).hostname), true, url)
  }
})
