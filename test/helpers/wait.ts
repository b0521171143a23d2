// Bounded waiting for a condition, for tests that cannot know when something asynchronous lands.

/** Polls until `ok` holds; fails naming `what` after `timeoutMs`. */
export async function waitFor(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await ok()) return
    await new Promise((r) => setTimeout(r, 20))
  }
  throw new Error(`timed out waiting for ${what}`)
}
