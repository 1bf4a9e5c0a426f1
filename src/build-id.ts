// Which build this code is: scripts/build.mjs defines __RCH_BUILD__ as a hash of the built core,
// so two builds that differ in any byte of their code have different ids and a hook never talks to
// an agent of another build. Unbuilt sources (ts-jest, ts-node) have no such hash: they are "src".
declare const __RCH_BUILD__: string | undefined

export const BUILD_ID: string = typeof __RCH_BUILD__ === 'string' ? __RCH_BUILD__ : 'src'
