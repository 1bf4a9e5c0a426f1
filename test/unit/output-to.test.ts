// The step output's backpressure (job.ts outputTo): a full sink gets one drain listener however many
// writes find it full, and the source resumes only once every full sink drained.
import { EventEmitter } from 'node:events'
import { outputTo } from '../../src/job'

class FullSink extends EventEmitter {
  writes = 0
  constructor(public full: boolean) {
    super()
  }
  write(): boolean {
    this.writes++
    return !this.full
  }
  drain(): void {
    this.full = false
    this.emit('drain')
  }
}

/** The step's stdout and stderr, each full or not to begin with, and the output writing to them. */
function sinks(outFull: boolean, errFull: boolean): { out: FullSink; err: FullSink; o: ReturnType<typeof outputTo> } {
  const out = new FullSink(outFull)
  const err = new FullSink(errFull)
  return { out, err, o: outputTo(out, err) }
}

const settled = async (p: Promise<void>): Promise<boolean> => {
  let done = false
  void p.then(() => (done = true))
  await new Promise((r) => setImmediate(r))
  return done
}

test('many writes into a full sink add one drain listener, not one each', () => {
  const { out, o } = sinks(true, true)
  for (let i = 0; i < 20; i++) expect(o.onStdout(Buffer.from('x'))).toBe(false)
  expect(out.writes).toBe(20)
  expect(out.listenerCount('drain')).toBe(1)
  out.drain()
  expect(out.listenerCount('drain')).toBe(0)
  // Full again later: waited for again.
  out.full = true
  o.onStdout(Buffer.from('y'))
  expect(out.listenerCount('drain')).toBe(1)
})

test('waitDrain resolves once the full sink drained, at once when none is full', async () => {
  const { out, o } = sinks(false, true)
  expect(o.onStdout(Buffer.from('x'))).toBe(true)
  expect(await settled(o.waitDrain!())).toBe(true)
  out.full = true
  o.onStdout(Buffer.from('x'))
  const w = o.waitDrain!()
  expect(await settled(w)).toBe(false)
  out.drain()
  expect(await settled(w)).toBe(true)
})

test('with stdout and stderr both full, the source waits for both', async () => {
  const { out, err, o } = sinks(true, true)
  o.onStdout(Buffer.from('x'))
  o.onStderr(Buffer.from('x'))
  const w = o.waitDrain!()
  err.drain()
  expect(await settled(w)).toBe(false)
  out.drain()
  expect(await settled(w)).toBe(true)
})

test('a sink that fills while the source already waits is waited for too', async () => {
  const { out, err, o } = sinks(true, false)
  o.onStdout(Buffer.from('x'))
  const w = o.waitDrain!()
  // The rest of the chunk goes on being written after the source asked to wait.
  err.full = true
  o.onStderr(Buffer.from('x'))
  out.drain()
  expect(await settled(w)).toBe(false)
  err.drain()
  expect(await settled(w)).toBe(true)
})
