import { PassThrough, Readable, Writable } from 'node:stream'
import { forward } from '../../src/sync/sync'

/** A source of n chunks of 16 KiB that records when it has been read to the end, and how much it has given. */
function source(n: number): Readable & { ended: Promise<void>; given: number } {
  let i = 0
  const r = new Readable({
    highWaterMark: 16 * 1024,
    read() {
      const more = i++ < n
      if (more) r.given += 16 * 1024
      this.push(more ? Buffer.alloc(16 * 1024, 1) : null)
    }
  }) as Readable & { ended: Promise<void>; given: number }
  r.given = 0
  r.ended = new Promise((res) => r.on('end', () => res()))
  return r
}

/** p's value, or 'timeout' after ms; the timer is cleared either way so it cannot hold Jest open. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), ms)))])
  } finally {
    clearTimeout(timer)
  }
}

describe('forward', () => {
  test('copies everything, with backpressure, and ends the destination', async () => {
    const src = source(50)
    const got: Buffer[] = []
    let written = 0
    let ahead = 0
    const dst = new Writable({
      highWaterMark: 1024,
      write(c, _e, cb) {
        got.push(c)
        written += c.length
        // how far the source has been read beyond what the destination has taken
        ahead = Math.max(ahead, src.given - written)
        setImmediate(cb)
      }
    })
    let counted = 0
    const finished = new Promise((r) => dst.on('finish', r))
    forward(src, dst, (n) => (counted += n))
    await finished
    expect(Buffer.concat(got).length).toBe(50 * 16 * 1024)
    expect(counted).toBe(50 * 16 * 1024)
    // backpressure: the source is read a few chunks ahead at most, not all 50 while the destination is busy
    expect(ahead).toBeLessThanOrEqual(4 * 16 * 1024)
  })

  test('a destination that goes away while full (a tar that stopped reading) still lets the source run to its end', async () => {
    const src = source(200)
    let writes = 0
    const dst = new Writable({
      highWaterMark: 1024,
      write(_c, _e, cb) {
        // takes two chunks, then "exits" without ever draining
        if (++writes === 2) setTimeout(() => dst.destroy(), 20)
        else if (writes < 2) cb()
      }
    })
    forward(src, dst)
    expect(await within(src.ended, 3000)).toBeUndefined()
  })

  test('works for a PassThrough destination closed by end()', async () => {
    const src = source(3)
    const dst = new PassThrough()
    const chunks: Buffer[] = []
    dst.on('data', (c) => chunks.push(c))
    const done = new Promise((r) => dst.on('end', r))
    forward(src, dst)
    await done
    expect(Buffer.concat(chunks).length).toBe(3 * 16 * 1024)
  })
})
