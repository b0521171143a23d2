// The command line after the entry's Node check. The gateway is loaded only now, so that the check
// runs before any dependency does.
export async function run(argv: readonly string[]): Promise<void> {
  try {
    const { gatewayCommand } = await import('./gateway-command.ts')
    await gatewayCommand(argv)
  } catch (err) {
    process.stderr.write(`edge-gateway: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exit(1)
  }
}
