/**
 * A small HTTP proxy in front of moto (or any EC2 Query API endpoint) with programmable
 * faults, for testing how the EC2 provider copes with throttling, capacity errors, spot
 * failures and lost responses. Node built-ins only; listens on 127.0.0.1:<random port>.
 *
 *   const proxy = await startFaultProxy();               // target: loadMoto().endpoint
 *   const ec2 = ec2Client({ endpoint: proxy.endpoint });
 *   proxy.fail({ action: 'DescribeInstances', times: 2, code: 'RequestLimitExceeded', status: 503 });
 *   proxy.fail({ action: 'RunInstances', when: (p) => p.get('InstanceType') === 'm7i.large',
 *                code: 'InsufficientInstanceCapacity', status: 500 });
 *   proxy.fail({ action: 'RunInstances', when: isSpotRequest, code: 'SpotMaxPriceTooLow' });
 *   ... proxy.calls('RunInstances').map((r) => r.params.get('ClientToken')) ...
 *   await proxy.close();
 *
 * The EC2 Query API is a POST of a form-encoded body with Action=...&Version=...&<params>;
 * params are flattened (`TagSpecification.1.Tag.1.Key`, `InstanceMarketOptions.MarketType`).
 * An injected fault is answered the way EC2 answers errors:
 *   <?xml version="1.0" encoding="UTF-8"?>
 *   <Response><Errors><Error><Code>X</Code><Message>Y</Message></Error></Errors><RequestID>id</RequestID></Response>
 * which @aws-sdk/client-ec2 turns into an exception with `name === X`.
 *
 * ClientToken emulation (default on, `clientTokens: 'passthrough'` turns it off): moto 5.2.5
 * ignores RunInstances' ClientToken (the same token twice launches two instances). Real EC2
 * answers a repeated token with the original reservation (same instance ids), or
 * IdempotentParameterMismatch (400) if the other parameters differ. The proxy does that:
 * it remembers moto's successful RunInstances answer per ClientToken and replays it.
 * Combined with `forward: true` faults (request reaches moto, the client gets an error -
 * a lost response) this exercises the retry-with-the-same-token path for real.
 */
import { randomUUID } from 'node:crypto'
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import { loadMoto } from './ec2-env'

export interface ProxiedRequest {
  /** 1, 2, ... in arrival order */
  seq: number
  /** the Query API action ('' if the request had none, e.g. GET /moto-api/...) */
  action: string
  /** all parameters of the request (query string + form body), Action and Version included */
  params: URLSearchParams
  method: string
  path: string
  /** Code of the fault injected into this request's answer, if any */
  fault?: string
  /** true: the answer was a replay of an earlier RunInstances with the same ClientToken */
  replayed?: boolean
  /** HTTP status the client got (undefined while in flight or if the socket was destroyed) */
  status?: number
  /** ms since the proxy started */
  at: number
}

export interface FaultRule {
  /** Query API action to match, e.g. 'RunInstances'; '*' matches any */
  action: string
  /** extra condition on the request's parameters (all rules must match) */
  when?: (params: URLSearchParams, request: ProxiedRequest) => boolean
  /** how many matching requests get the fault; default: all of them until removed */
  times?: number
  /** EC2 error code, e.g. 'RequestLimitExceeded', 'InsufficientInstanceCapacity' */
  code: string
  /** default: a generic message naming the code */
  message?: string
  /** HTTP status; default 400. EC2 uses 503 for RequestLimitExceeded, 500 for server errors */
  status?: number
  /** wait this long before answering (after forwarding, if forward is set) */
  delayMs?: number
  /**
   * true: forward the request to the target first (its state changes, e.g. an instance is
   * launched) and then answer the client with the fault instead of the real answer.
   */
  forward?: boolean
}

export interface FaultHandle {
  readonly rule: FaultRule
  /** how many requests got this fault so far */
  readonly hits: number
  /** stop injecting it */
  remove(): void
}

export interface FaultProxy {
  /** "http://127.0.0.1:<port>": give this to the EC2 client as its endpoint */
  readonly endpoint: string
  readonly port: number
  /** the upstream endpoint (moto) */
  readonly target: string
  /** every request, in arrival order */
  readonly requests: ProxiedRequest[]
  /** requests for one action, in order */
  calls(action: string): ProxiedRequest[]
  /** adds a fault rule; rules are tried in the order they were added, first match wins */
  fail(rule: FaultRule): FaultHandle
  /** removes all fault rules (the request log stays) */
  clearFaults(): void
  /** empties the request log */
  clearLog(): void
  close(): Promise<void>
}

export interface FaultProxyOptions {
  /** upstream endpoint; default loadMoto().endpoint */
  target?: string
  /** 'emulate' (default): RunInstances honours ClientToken as EC2 does; 'passthrough': as moto does */
  clientTokens?: 'emulate' | 'passthrough'
}

/** `when` predicate: a RunInstances that asks for spot capacity. */
export function isSpotRequest(params: URLSearchParams): boolean {
  return params.get('InstanceMarketOptions.MarketType') === 'spot'
}

/** The XML body EC2 sends with an error. */
export function ec2ErrorXml(code: string, message: string, requestId: string = randomUUID()): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Response><Errors><Error><Code>${xmlEscape(code)}</Code><Message>${xmlEscape(message)}</Message>` +
    `</Error></Errors><RequestID>${xmlEscape(requestId)}</RequestID></Response>`
  )
}

function xmlEscape(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!)
}

interface ActiveRule {
  rule: FaultRule
  hits: number
  removed: boolean
}

interface Upstream {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
}

interface TokenEntry {
  /** the request's parameters other than ClientToken, canonical */
  signature: string
  answer: Promise<Upstream>
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'content-length'
])

export async function startFaultProxy(options: FaultProxyOptions = {}): Promise<FaultProxy> {
  const target = new URL(options.target ?? loadMoto().endpoint)
  const emulateTokens = (options.clientTokens ?? 'emulate') === 'emulate'
  const t0 = Date.now()
  const requests: ProxiedRequest[] = []
  let rules: ActiveRule[] = []
  const tokens = new Map<string, TokenEntry>()
  let seq = 0

  const forward = (req: http.IncomingMessage, body: Buffer): Promise<Upstream> =>
    new Promise((resolve, reject) => {
      const headers: http.OutgoingHttpHeaders = {}
      for (const [k, v] of Object.entries(req.headers)) {
        if (!HOP_BY_HOP.has(k) && v !== undefined) headers[k] = v
      }
      headers.host = target.host
      headers['content-length'] = String(body.length)
      const up = http.request(
        {
          protocol: target.protocol,
          hostname: target.hostname,
          port: target.port,
          method: req.method,
          path: req.url,
          headers
        },
        (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('end', () => resolve({ status: res.statusCode ?? 502, headers: res.headers, body: Buffer.concat(chunks) }))
          res.on('error', reject)
        }
      )
      up.on('error', reject)
      up.end(body)
    })

  const sendUpstream = (res: http.ServerResponse, up: Upstream): void => {
    const headers: http.OutgoingHttpHeaders = {}
    for (const [k, v] of Object.entries(up.headers)) {
      if (!HOP_BY_HOP.has(k) && v !== undefined) headers[k] = v
    }
    headers['content-length'] = String(up.body.length)
    res.writeHead(up.status, headers)
    res.end(up.body)
  }

  const sendFault = (res: http.ServerResponse, rule: FaultRule): void => {
    const body = ec2ErrorXml(rule.code, rule.message ?? `${rule.code} (injected by the test's fault proxy)`)
    res.writeHead(rule.status ?? 400, {
      'content-type': 'text/xml;charset=UTF-8',
      'content-length': String(Buffer.byteLength(body))
    })
    res.end(body)
  }

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

  const pickRule = (entry: ProxiedRequest): ActiveRule | undefined => {
    for (const r of rules) {
      if (r.removed) continue
      if (r.rule.times !== undefined && r.hits >= r.rule.times) continue
      if (r.rule.action !== '*' && r.rule.action !== entry.action) continue
      if (r.rule.when && !r.rule.when(entry.params, entry)) continue
      r.hits += 1
      return r
    }
    return undefined
  }

  // Forwards a RunInstances, honouring ClientToken like EC2 when emulation is on.
  const forwardRun = async (req: http.IncomingMessage, body: Buffer, entry: ProxiedRequest): Promise<Upstream & { replayed?: boolean }> => {
    const token = entry.params.get('ClientToken')
    if (!emulateTokens || entry.action !== 'RunInstances' || !token) return forward(req, body)
    const signature = [...entry.params.entries()]
      .filter(([k]) => k !== 'ClientToken')
      .map(([k, v]) => `${k}=${v}`)
      .sort()
      .join('&')
    const known = tokens.get(token)
    if (known) {
      if (known.signature !== signature) {
        const xml = ec2ErrorXml('IdempotentParameterMismatch', `The client token ${token} was used before with different parameters`)
        return { status: 400, headers: { 'content-type': 'text/xml;charset=UTF-8' }, body: Buffer.from(xml) }
      }
      const prev = await known.answer.catch(() => undefined)
      if (prev && prev.status === 200) return { ...prev, replayed: true }
      // the first try failed upstream: EC2 would run it again
    }
    const answer = forward(req, body)
    tokens.set(token, { signature, answer })
    const up = await answer
    if (up.status !== 200) tokens.delete(token)
    return up
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      void (async () => {
        const body = Buffer.concat(chunks)
        const url = new URL(req.url ?? '/', 'http://proxy.invalid')
        const params = new URLSearchParams(url.search)
        const ctype = String(req.headers['content-type'] ?? '')
        if (req.method === 'POST' && (ctype === '' || ctype.startsWith('application/x-www-form-urlencoded'))) {
          for (const [k, v] of new URLSearchParams(body.toString('utf8'))) params.append(k, v)
        }
        const entry: ProxiedRequest = {
          seq: ++seq,
          action: params.get('Action') ?? '',
          params,
          method: req.method ?? 'GET',
          path: url.pathname,
          at: Date.now() - t0
        }
        requests.push(entry)
        try {
          const hit = pickRule(entry) // a throwing `when` lands in the catch below
          if (hit) {
            entry.fault = hit.rule.code
            if (hit.rule.forward) await forwardRun(req, body, entry)
            if (hit.rule.delayMs) await sleep(hit.rule.delayMs)
            sendFault(res, hit.rule)
            entry.status = hit.rule.status ?? 400
            return
          }
          const up = await forwardRun(req, body, entry)
          if (up.replayed) entry.replayed = true
          sendUpstream(res, up)
          entry.status = up.status
        } catch (err) {
          // upstream unreachable, or a rule's `when` threw: answer, never leave the client hanging
          const xml = ec2ErrorXml('FaultProxyError', `fault proxy (target ${target.origin}): ${String(err)}`)
          if (!res.headersSent) {
            res.writeHead(502, { 'content-type': 'text/xml;charset=UTF-8' })
            res.end(xml)
            entry.status = 502
          } else {
            res.destroy()
          }
        }
      })()
    })
  })
  server.keepAliveTimeout = 5_000

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const port = (server.address() as AddressInfo).port

  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    target: target.origin,
    requests,
    calls: (action) => requests.filter((r) => r.action === action),
    fail(rule) {
      const active: ActiveRule = { rule, hits: 0, removed: false }
      rules.push(active)
      return {
        rule,
        get hits() {
          return active.hits
        },
        remove() {
          active.removed = true
        }
      }
    },
    clearFaults() {
      for (const r of rules) r.removed = true
      rules = []
    },
    clearLog() {
      requests.length = 0
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
  }
}
