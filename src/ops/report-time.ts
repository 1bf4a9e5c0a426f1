// `report`'s --since/--until: an ISO date or time, or an age (7d, 24h). A date or a time without a
// zone is read in the budget's time zone, so `--since 2026-11-01 --by day` starts at the first
// budget day's midnight and no day is cut in two.

const AGE = /^(\d{1,6})([mhdw])$/
const UNIT_MS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 }
/** A date, or a date and time, with a zone (only after a time) or without one. */
const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2})?)?$/i

/** How far `timeZone`'s wall clock is ahead of UTC at instant `at` (ms). */
function zoneOffset(at: number, timeZone: string): number {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit'
  }).formatToParts(new Date(at))
  const n = (t: string): number => Number(parts.find((p) => p.type === t)!.value)
  return Date.UTC(n('year'), n('month') - 1, n('day'), n('hour'), n('minute'), n('second')) - Math.floor(at / 1000) * 1000
}

const DAY_MS = 86_400_000

/**
 * The instant the wall clock of `timeZone` shows `wall` (a UTC-based ms value of the wall time).
 * Next to a daylight-saving change: a wall time shown twice is its first instant; one skipped (the
 * clock jumped over it: in America/Santiago or America/Havana midnight itself) is read with the
 * offset from before the jump, the instant after it, so that a day never starts in the day before.
 */
function fromWallTime(wall: number, timeZone: string): number {
  // The real instant is within 14 h of `wall` read as UTC: a day either side is before and after any change there.
  const before = zoneOffset(wall - DAY_MS, timeZone)
  const after = zoneOffset(wall + DAY_MS, timeZone)
  const shows = (off: number): boolean => zoneOffset(wall - off, timeZone) === off
  const found = [before, after].filter(shows).map((off) => wall - off)
  return found.length ? Math.min(...found) : wall - before
}

/** The time `text` names (epoch ms), or null when it is none of the accepted forms. */
export function parseTime(text: string, now: number, timeZone: string): number | null {
  const t = text.trim()
  if (t === 'now') return now
  const age = AGE.exec(t)
  if (age) return now - Number(age[1]) * UNIT_MS[age[2]]
  const m = ISO.exec(t)
  if (!m) return null
  const [y, mo, d, h = '0', mi = '0', s = '0', frac = '0', zone] = m.slice(1)
  const wall = Date.UTC(+y, +mo - 1, +d, +h, +mi, +s, Number(frac.slice(0, 3).padEnd(3, '0')))
  const back = new Date(wall)
  // Date.UTC (and Date.parse) roll 2026-02-30 over to March and 24:00 to the next day: such a time does not exist.
  if (back.getUTCFullYear() !== +y || back.getUTCMonth() !== +mo - 1 || back.getUTCDate() !== +d || +h > 23 || +mi > 59 || +s > 59)
    return null
  if (zone === undefined) return fromWallTime(wall, timeZone)
  if (/^z$/i.test(zone)) return wall
  const [, sign, zh, zm] = /^([+-])(\d{2}):?(\d{2})$/.exec(zone)!
  if (+zh > 23 || +zm > 59) return null
  return wall - (sign === '-' ? -1 : 1) * (+zh * 60 + +zm) * 60_000
}

export const TIME_FORMS = 'an ISO date or time (2026-11-01, 2026-11-01T08:00, 2026-11-01T08:00Z) or an age (30m, 24h, 7d, 2w)'
