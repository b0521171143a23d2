// The bench scripts' command line: `--name value` options after the script's path.

export const args: readonly string[] = process.argv.slice(2)

/** The value after `--name`, or `def` when the option is absent or has no value. */
export function opt(name: string, def: string): string {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && args[i + 1] ? args[i + 1]! : def
}
