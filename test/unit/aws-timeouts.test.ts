// An EC2 API that takes the request and never answers: the call ends with a TimeoutError (retried
// like any lost answer; for RunInstances an answer whose outcome is unknown) instead of holding the
// job until the runner kills the hook. Loopback only.
import { createServer, type Server, type Socket } from 'node:net'
import { AWS_HTTP, autoScalingClient, ec2Client, isRetryableAwsError, requestOutcome } from '../../src/providers/ec2-api'

process.env.AWS_ACCESS_KEY_ID = 'testing'
process.env.AWS_SECRET_ACCESS_KEY = 'testing'
process.env.AWS_EC2_METADATA_DISABLED = 'true'
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'

let server: Server
const sockets = new Set<Socket>()
let endpoint = ''

beforeAll(async () => {
  // Reads the request and never answers.
  server = createServer((s) => {
    sockets.add(s)
    s.on('data', () => undefined)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`
})

afterAll(async () => {
  for (const s of sockets) s.destroy()
  await new Promise((r) => server.close(r))
})

/** The timeouts a client's request handler was built with (the SDK's NodeHttpHandler keeps them behind a promise). */
const handlerTimeouts = async (client: { config: { requestHandler: unknown } }): Promise<Record<string, unknown>> => {
  const c = await (client.config.requestHandler as { configProvider: Promise<Record<string, unknown>> }).configProvider
  return { connectionTimeout: c.connectionTimeout, requestTimeout: c.requestTimeout, throwOnRequestTimeout: c.throwOnRequestTimeout }
}

test('every EC2 and Auto Scaling client the hook builds bounds its requests by default', async () => {
  const bounded = { connectionTimeout: 10_000, requestTimeout: 30_000, throwOnRequestTimeout: true }
  expect(AWS_HTTP).toEqual(bounded)
  const ec2 = (await ec2Client({ region: 'eu-west-1', endpoint })).client
  const asg = autoScalingClient({ region: 'eu-west-1', endpoint }).client
  try {
    expect(await handlerTimeouts(ec2)).toEqual(bounded)
    expect(await handlerTimeouts(asg)).toEqual(bounded)
  } finally {
    ec2.destroy()
    asg.destroy()
  }
})

test('an Auto Scaling request that gets no answer ends with a TimeoutError too', async () => {
  const { sdk, client } = autoScalingClient({ region: 'eu-west-1', endpoint }, { ...AWS_HTTP, requestTimeout: 300 })
  try {
    const err = await client.send(new sdk.DescribeAutoScalingGroupsCommand({})).then(
      () => null,
      (e: unknown) => e
    )
    expect((err as Error)?.name).toBe('TimeoutError')
    expect(isRetryableAwsError(err)).toBe(true)
  } finally {
    client.destroy()
  }
})

test('a request that gets no answer ends with a TimeoutError, retried, and of unknown outcome', async () => {
  const { sdk, client } = await ec2Client({ region: 'eu-west-1', endpoint }, { ...AWS_HTTP, requestTimeout: 300 })
  try {
    const t0 = Date.now()
    const err = await client.send(new sdk.DescribeInstancesCommand({})).then(
      () => null,
      (e: unknown) => e
    )
    expect((err as Error)?.name).toBe('TimeoutError')
    expect(Date.now() - t0).toBeLessThan(5000)
    expect(isRetryableAwsError(err)).toBe(true)
    expect(requestOutcome(err)).toBe('unknown')
  } finally {
    client.destroy()
  }
})

test('positive control: without the request timeout the same call is still waiting after a second', async () => {
  const { sdk, client } = await ec2Client(
    { region: 'eu-west-1', endpoint },
    { connectionTimeout: 10_000, requestTimeout: 0, throwOnRequestTimeout: true }
  )
  try {
    let settled = false
    const call = client.send(new sdk.DescribeInstancesCommand({})).finally(() => (settled = true))
    call.catch(() => undefined)
    await new Promise((r) => setTimeout(r, 1000))
    expect(settled).toBe(false)
  } finally {
    client.destroy()
    for (const s of sockets) s.destroy()
  }
})
