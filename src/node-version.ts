// Which Node this project runs on, checked by the entry (main.ts) before anything else is loaded. It
// imports nothing: on an older Node a dependency fails while it loads (undici reaches for zlib's zstd,
// new in Node 23.8) with a stack trace that says nothing of the cause.

/** The major version package.json's `engines` asks for (a test keeps the two in step). */
export const MIN_NODE_MAJOR = 24

/**
 * Undefined when `version` (process.versions.node, e.g. `20.20.2`) is new enough; otherwise the one
 * line to print: which Node is needed, which one ran, and how to run the project's own.
 */
export function nodeVersionProblem(version: string, execPath: string): string | undefined {
  const major = Number(version.split('.')[0])
  if (Number.isInteger(major) && major >= MIN_NODE_MAJOR) return undefined
  return `edge-gateway needs Node ${MIN_NODE_MAJOR} or newer, but ${execPath} is v${version}. Run the project's own Node ${MIN_NODE_MAJOR} from the project directory: npm start, or npx edge-gateway (npm ci installs it).`
}
