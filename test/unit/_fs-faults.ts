// A node:fs call that fails as the runner host can (out of descriptors, an I/O error, a full disk)
// for the paths `when` picks, and works for every other: what the code under test does with it.
type FsCall = 'readdirSync' | 'openSync' | 'readFileSync'

export function failingFs(call: FsCall, when: (path: string) => boolean, code: string): jest.SpyInstance {
  const fs = jest.requireActual<typeof import('node:fs')>('node:fs')
  const real = fs[call] as (...a: unknown[]) => unknown
  return jest.spyOn(fs, call).mockImplementation(((p: unknown, ...rest: unknown[]) => {
    if (when(String(p))) throw Object.assign(new Error(`${code}: failed`), { code })
    return real(p, ...rest)
  }) as never)
}
