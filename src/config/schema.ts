// The configuration schema: validated once at start-up, every default settled here.
import { homedir } from 'node:os'
import { isAbsolute, join } from 'node:path'
import { z } from 'zod'
import { inlinePolicySchema } from '../policy/schema.ts'
import { duration, size } from './units.ts'

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'expected HOST:PORT, e.g. 0.0.0.0:5000')

/** A secret given inline, from a file or from an environment variable: exactly one of the three. */
export const secretSource = (what: string) =>
  z
    .strictObject({ value: z.string().optional(), file: z.string().min(1).optional(), env: z.string().min(1).optional() })
    .refine((s) => [s.value, s.file, s.env].filter((v) => v !== undefined).length === 1, {
      message: `${what}: give exactly one of value, file or env`,
    })

/** Upstream credentials: a user name (or where to read it) and a password or token. */
const upstreamAuth = z.strictObject({
  username: z.union([z.string().min(1), secretSource('username')]),
  password: secretSource('password'),
})

const upstream = z.strictObject({
  /** What `ns`, path prefixes and policy globs call this registry. */
  name: z.string().regex(/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d+)?$/, 'expected a registry host name such as ghcr.io'),
  url: z.url({ protocol: /^https?$/ }),
  default: z.boolean().default(false),
  auth: upstreamAuth.optional(),
  /** Refuse redirects to loopback, private and link-local addresses (blob CDNs are public). */
  refusePrivateRedirects: z.boolean().default(false),
  /** A PEM bundle of CA certificates trusted for this upstream's connections only (besides Node's roots). */
  ca: z.string().min(1).optional(),
})

const limits = z
  .strictObject({
    manifestBytes: size.default(4 * 1024 * 1024),
    signatureManifestBytes: size.default(1024 * 1024),
    signatureLayerBytes: size.default(4 * 1024 * 1024),
    bundleBytes: size.default(4 * 1024 * 1024),
    maxSignatures: z.number().int().positive().default(64),
    maxReferrers: z.number().int().positive().default(256),
    maxTagPages: z.number().int().positive().default(100),
    /** Verifications running at once; a request that would start one more gets 429. */
    concurrentVerifications: z.number().int().positive().default(64),
    /** Requests in flight to one upstream at once (its connection pool); beyond it, 429. */
    upstreamConnections: z.number().int().positive().default(128),
  })
  .prefault({})

const timeouts = z
  .strictObject({
    connect: duration.default(5_000),
    headers: duration.default(30_000),
    body: duration.default(60_000),
    /** Clients: a request whose headers take longer (or a connection silent that long) is closed. */
    clientHeaders: duration.default(30_000),
    /** Clients: a request that takes longer to arrive in full is refused (408). */
    clientRequest: duration.default(60_000),
  })
  .prefault({})

const cache = z
  .strictObject({
    url: z.string().optional(),
    /** The Redis password, kept out of `url` (a password in the URL is used as it is). */
    password: secretSource('password').optional(),
    allowTTL: duration.default(3_600_000),
    denyTTL: duration.default(60_000),
    tagTTL: duration.default(0),
    manifestBytes: size.default(64 * 1024 * 1024),
  })
  .prefault({})

const trustRoot = z
  .strictObject({
    name: z.string().min(1),
    file: z.string().optional(),
    tuf: z.strictObject({ mirror: z.url(), root: z.string(), cachePath: z.string().optional() }).optional(),
  })
  .refine((t) => (t.file === undefined) !== (t.tuf === undefined), { message: 'give exactly one of file or tuf' })

/** Credentials for the S3 backend: each key from env or a file, never inline in the config. */
const s3Credentials = z.strictObject({
  accessKeyIdEnv: z.string().optional(),
  accessKeyIdFile: z.string().optional(),
  secretAccessKeyEnv: z.string().optional(),
  secretAccessKeyFile: z.string().optional(),
})

/**
 * Where the store lives without `storage.path`: `$XDG_DATA_HOME/trustpull` (an absolute
 * XDG_DATA_HOME only, as the XDG spec says), else `~/.local/share/trustpull`. The container image
 * sets XDG_DATA_HOME=/tmp/.local/share, inside the one writable mount.
 */
export function defaultStoragePath(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_DATA_HOME
  return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.local', 'share'), 'trustpull')
}

/**
 * The verified content store (the mirror): only bytes whose digest was checked are published.
 * On by default, filesystem under `path`; `s3` instead for replicas sharing one bucket; `enabled:
 * false` makes trustpull a pass-through that writes nothing.
 */
const storage = z
  .strictObject({
    enabled: z.boolean().default(true),
    /** Default: defaultStoragePath(), filled in below (so the JSON Schema holds no machine's home). */
    path: z.string().min(1).optional().describe('default: $XDG_DATA_HOME/trustpull, else ~/.local/share/trustpull'),
    maxSize: size.default(20 * 1024 ** 3),
    /** How long a tag may be answered from its last verified digest while the upstream is down. */
    staleIfError: duration.default(24 * 3_600_000),
    /**
     * Bytes per second the scrub re-hashes stored files (a pass at start-up, then daily); reads of
     * a file that hashed right and is unchanged since skip hashing. 0: every whole read is hashed.
     */
    scrubRate: size.default(32 * 1024 * 1024),
    s3: z
      .strictObject({
        bucket: z.string().min(1),
        endpoint: z.url().optional(),
        region: z.string().default('us-east-1'),
        prefix: z.string().default(''),
        forcePathStyle: z.boolean().default(false),
        credentials: s3Credentials.optional(),
      })
      .optional(),
  })
  .transform((s) => ({ ...s, path: s.path ?? defaultStoragePath() }))
  .prefault({})

/**
 * The admission webhook (src/admission/): its own HTTPS listener, since the API server calls
 * webhooks over TLS only. `budget` stays under the webhook's timeoutSeconds (default 10 s): a
 * decision not reached by then is a refusal, never a late answer the API server has stopped
 * waiting for.
 */
const admission = z
  .strictObject({
    listen: hostPort,
    tls: z.strictObject({ cert: z.string().min(1), key: z.string().min(1) }, { error: 'the API server calls admission webhooks over HTTPS only: give tls.cert and tls.key' }),
    budget: duration.default(9_000),
    /** An AdmissionReview carries the object and the old one: the API server caps each near 3 MiB. */
    maxBodyBytes: size.default(7 * 1024 * 1024),
  })
  .refine((a) => a.budget > 0, { message: 'budget must be above 0', path: ['budget'] })

export const configSchema = z.strictObject({
  listen: hostPort.default('127.0.0.1:5000'),
  tls: z.strictObject({ cert: z.string(), key: z.string(), clientCA: z.string().optional() }).optional(),
  upstreams: z
    .array(upstream)
    .min(1)
    .default([{ name: 'docker.io', url: 'https://registry-1.docker.io', default: true, refusePrivateRedirects: false }]),
  limits,
  timeouts,
  cache,
  clients: z
    .strictObject({
      /** Static bearer tokens (`Authorization: Bearer ...`), each with the name rules and logs call the client. */
      tokens: z.array(z.strictObject({ name: z.string().min(1), token: secretSource('token') })).default([]),
      /** An htpasswd file of bcrypt entries for HTTP basic auth (what `docker login` sends). */
      htpasswd: z.string().optional(),
      /** Clients present certificates signed by tls.clientCA; the subject's CN names the client. */
      mtls: z.boolean().default(false),
      /** Per-client restrictions: a client named here may pull only from these upstreams. */
      rules: z.array(z.strictObject({ client: z.string().min(1), upstreams: z.array(z.string().min(1)).min(1) })).default([]),
      /** Requests per second per client (by name, or by address when anonymous); 0 = unlimited. */
      requestsPerSecond: z.number().nonnegative().default(0),
      /** Requests a client may send at once above its rate. */
      burst: z.number().int().positive().default(100),
      /**
       * Failed authentications per remote address: after `burst` of them the address gets 429 before
       * any password is checked (bcrypt is costly by design), one more allowed every 60/perMinute s.
       */
      failedAuth: z.strictObject({ burst: z.number().int().positive().default(10), perMinute: z.number().positive().default(10) }).prefault({}),
      /** Clients (token names, htpasswd users, certificate CNs) that may use /api/v1, /ui/ and the denylist. */
      admins: z.array(z.string().min(1)).default([]),
    })
    .prefault({}),
  trustRoots: z.array(trustRoot).default([]),
  noMatchPolicy: z.enum(['deny', 'warn', 'allow']).default('deny'),
  policyDirs: z.array(z.string()).default([]),
  /** Inline policies: a name plus the fields of a ClusterImagePolicy spec (see src/policy/schema.ts). */
  policies: z.array(inlinePolicySchema).default([]),
  storage,
  admission: admission.optional(),
  blobs: z.strictObject({ requireAllowedManifest: z.boolean().default(true) }).prefault({}),
  telemetry: z
    .strictObject({
      /** OTLP/HTTP traces endpoint; tracing is off without it. */
      otlp: z.strictObject({ endpoint: z.url() }).optional(),
      /** Serve /metrics on a separate address (e.g. 0.0.0.0:9090); default: on the main port. */
      metrics: z.strictObject({ listen: hostPort.optional(), enabled: z.boolean().default(true) }).prefault({}),
    })
    .prefault({}),
  /** Files the config names (policies, trust roots, TLS, htpasswd, tokens) are re-read when they change. */
  reload: z.strictObject({ watch: z.boolean().default(true), interval: duration.default(2_000) }).prefault({}),
  /** The operator surface (src/admin/): verdict history, the API and page, the denylist. */
  admin: z
    .strictObject({
      /** Where operators reach this proxy (https://trustpull.example.com): 403 DENIED messages end with the digest's page there. */
      publicUrl: z.url({ protocol: /^https?$/ }).optional(),
      /** Verdicts kept (one per digest, the latest), in Redis when cache.url is set, else in process. */
      historySize: z.number().int().positive().max(100_000).default(1_000),
      /** The denylist file when there is no Redis (default: denylist.json under storage.path). */
      denylistPath: z.string().min(1).optional(),
    })
    .prefault({}),
  log: z.strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') }).prefault({}),
})

export type Config = z.output<typeof configSchema>
export type ConfigInput = z.input<typeof configSchema>
export type UpstreamConfig = Config['upstreams'][number]
