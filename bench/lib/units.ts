// Reading the numbers load generators print with a unit after them.

/** `1.23` `ms` (or `us`, `s`) → milliseconds. */
export function toMs(value: string, unit: string): number {
  const n = Number(value)
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : n
}

/** `1.5` `KB` (or `B`, `MB`, `GB`) → MB, with the binary multiples wrk and h2load use. */
export function toMB(value: string, unit: string): number {
  return Number(value) * ({ B: 1 / 2 ** 20, KB: 1 / 1024, MB: 1, GB: 1024 } as Record<string, number>)[unit]!
}
